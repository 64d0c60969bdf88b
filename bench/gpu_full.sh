#!/usr/bin/env bash
# Issue 4's GPU run in one call: frame-op GPU tests (they decide the op backend), then the full network trained
# ~6 min on synthetic CAMUS (256 px) and tested on held-out patients.
# Usage on the GPU machine, from the repo root: bash bench/gpu_full.sh OUTDIR [MAX_TIME]
set -uo pipefail
OUTDIR=${1:-/tmp/gdkvm_gpu}; MAX_TIME=${2:-00:00:06:00}
mkdir -p "$OUTDIR"
source bench/gpu_env.sh
gpu_report 2>&1 | tee "$OUTDIR/env.txt"
start=$(date +%s)
python3 -m gdkvm.cli synth camus --out data/synthetic_camus_300 --patients 300 --seed 0 --workers 14 2>&1 | tail -1 &
backend=naive
if timeout 120 python3 -m pytest -q -x -p no:cacheprovider tests/ops/test_frame_gpu.py 2>&1 | tail -3 | tee "$OUTDIR/frame_gpu_tests.txt" | grep -q " passed" \
   && ! grep -q "failed\|error" "$OUTDIR/frame_gpu_tests.txt"; then backend=triton; fi
echo "frame op backend for training: $backend ($(( $(date +%s) - start )) s)" | tee -a "$OUTDIR/env.txt"
wait
echo "training starts at $(( $(date +%s) - start )) s"
python3 -m gdkvm.cli fit --config configs/experiment/synthetic_camus_gpu.yaml --trainer.max_time "$MAX_TIME" \
  --model.net.init_args.ops_backend $backend 2>&1 | grep -v "^\s*$" | tail -8 | tee "$OUTDIR/fit.txt"
python3 -m gdkvm.cli test --config configs/experiment/synthetic_camus_gpu.yaml --ckpt_path best 2>&1 | tail -14 | tee "$OUTDIR/test.txt"
cp "$(find runs/synthetic_camus_gpu -name metrics.csv -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)" "$OUTDIR/train_metrics.csv"
cp "$(find runs/synthetic_camus_gpu -name metrics.json -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)" "$OUTDIR/"
echo "total: $(( $(date +%s) - start )) s"
