#!/usr/bin/env bash
# One GPU round for the memory ops: environment, GPU tests, benchmarks (frame rule and token rule vs fla-core).
# Usage on the GPU machine, from the repo root: bash bench/gpu_ops.sh OUTDIR
set -uo pipefail
OUTDIR=${1:-/tmp/gdkvm_gpu}
mkdir -p "$OUTDIR"
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
  python3 -c "import fla; print('fla-core', fla.__version__)" || echo "fla-core not importable"
} 2>&1 | tee "$OUTDIR/env.txt"
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/ops/test_frame_gpu.py tests/ops/test_chunk_gpu.py 2>&1 \
  | tee "$OUTDIR/gpu_tests.txt" | tail -25
timeout 200 python3 bench/ops_frame.py --json "$OUTDIR/bench_frame.json" 2>&1 | tee "$OUTDIR/bench_frame.txt"
timeout 200 python3 bench/ops_token.py --json "$OUTDIR/bench_token.json" 2>&1 | tee "$OUTDIR/bench_token.txt"
