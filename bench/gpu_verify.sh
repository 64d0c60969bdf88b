#!/usr/bin/env bash
# GPU verification rounds, each one call of at most ~9.5 minutes on one H100 (kind nvidia-h100-x1):
#   bash bench/gpu_verify.sh OUTDIR ops    # frame- and token-rule GPU tests (failures printed), then both op benches
#   bash bench/gpu_verify.sh OUTDIR infer  # inference speed of the default and full networks (bf16, CUDA graphs)
# Carry .whl (training wheels and fla-core; see bench/gpu_env.sh). Results land in OUTDIR, at most 8 files.
set -uo pipefail
OUTDIR=${1:-/tmp/gdkvm_gpu}; WHAT=${2:-ops}
mkdir -p "$OUTDIR"
source bench/gpu_env.sh >/dev/null 2>&1
gpu_report 2>&1 | tee "$OUTDIR/env.txt"
if [ "$WHAT" = ops ]; then
  timeout 170 python3 -m pytest -q -p no:cacheprovider -rf --tb=line tests/ops/test_frame_gpu.py 2>&1 \
    | tail -20 | tee "$OUTDIR/frame_tests.txt"
  GDKVM_AUTOTUNE=0 timeout 120 python3 -m pytest -q -p no:cacheprovider -rf --tb=line tests/ops/test_chunk_gpu.py 2>&1 \
    | tail -20 | tee "$OUTDIR/token_tests.txt"
  timeout 110 python3 bench/ops_frame.py --compile-max-t 20 --json "$OUTDIR/bench_frame.json" 2>&1 \
    | grep -vi warn | tee "$OUTDIR/bench_frame.txt" | tail -14
  timeout 150 python3 bench/ops_token.py --json "$OUTDIR/bench_token.json" 2>&1 | grep -vE '^\{' \
    | tee "$OUTDIR/bench_token.txt" | tail -40
else
  timeout 540 python3 bench/infer.py --models default full --sizes 256 128 112 --batches 1 32 --frames 100 \
    --json "$OUTDIR/infer.json" 2>&1 | grep -E '^\||^device|failed' | tee "$OUTDIR/infer.txt"
fi
