#!/usr/bin/env bash
# One GPU round for the memory ops: environment, GPU tests, benchmarks (frame rule and token rule vs fla-core).
# Usage on the GPU machine, from the repo root: bash bench/gpu_ops.sh OUTDIR   (wheels for fla-core in .whl/)
set -uo pipefail
OUTDIR=${1:-/tmp/gdkvm_gpu}
mkdir -p "$OUTDIR"
source bench/gpu_env.sh
export TRITON_INTERPRET=0 FLA_DISABLE_BACKEND_DISPATCH=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
  python3 -c "import fla; print('fla-core', fla.__version__)" || echo "fla-core not importable"
} 2>&1 | tee "$OUTDIR/env.txt"
timeout ${T_FRAME_TESTS:-100} python3 -m pytest -q -p no:cacheprovider tests/ops/test_frame_gpu.py 2>&1 \
  | tee "$OUTDIR/frame_gpu_tests.txt" | tail -15
GDKVM_AUTOTUNE=0 timeout ${T_TOKEN_TESTS:-150} python3 -m pytest -q -p no:cacheprovider tests/ops/test_chunk_gpu.py 2>&1 \
  | tee "$OUTDIR/token_gpu_tests.txt" | tail -15
timeout ${T_FRAME_BENCH:-120} python3 bench/ops_frame.py --json "$OUTDIR/bench_frame.json" 2>&1 | tee "$OUTDIR/bench_frame.txt" | tail -20
timeout ${T_TOKEN_BENCH:-150} python3 bench/ops_token.py --json "$OUTDIR/bench_token.json" 2>&1 | tee "$OUTDIR/bench_token.txt" | tail -25
