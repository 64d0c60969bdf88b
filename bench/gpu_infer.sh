#!/usr/bin/env bash
# Inference speed on one GPU: default and full networks, 256 and 112 px, batch 1 (streaming) and 32, bf16,
# eager and CUDA graphs. Usage on the GPU machine, from the repo root: bash bench/gpu_infer.sh OUTDIR
set -uo pipefail
OUTDIR=${1:-/tmp/gdkvm_gpu}
mkdir -p "$OUTDIR"
source bench/gpu_env.sh
export TRITON_INTERPRET=0
python3 bench/infer.py --sizes 256 112 --batches 1 32 --frames 300 --json "$OUTDIR/infer.json" 2>&1 | tail -14 | tee "$OUTDIR/infer.txt"
