#!/usr/bin/env bash
# Train the bundled default model on one GPU (issue 8): synthetic CAMUS data, fit, held-out test, fp16 weights.
# Usage on the GPU machine, from the repo root: bash bench/gpu_default.sh OUTDIR
set -uo pipefail
OUTDIR=${1:-/tmp/gdkvm_gpu}
mkdir -p "$OUTDIR"
source bench/gpu_env.sh
export TRITON_INTERPRET=0
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUTDIR/env.txt"
python3 -c "import torch, triton, lightning; print('torch', torch.__version__, 'triton', triton.__version__, 'lightning', lightning.__version__)" | tee -a "$OUTDIR/env.txt"
start=$(date +%s)
python3 -m gdkvm.cli synth camus --out data/synthetic_camus_default --patients 300 --seed 1 --workers 14 2>&1 | tail -2
echo "synth: $(( $(date +%s) - start )) s"
python3 -m gdkvm.cli fit --config configs/experiment/default_model.yaml 2>&1 | grep -v "^\s*$" | tail -25 | tee "$OUTDIR/fit.txt"
echo "fit done: $(( $(date +%s) - start )) s"
python3 -m gdkvm.cli test --config configs/experiment/default_model.yaml --ckpt_path best 2>&1 | tail -30 | tee "$OUTDIR/test.txt"
python3 bench/make_default.py runs/default_model --out "$OUTDIR/default.pt" --metadata "$OUTDIR/metadata.json"
cp "$(ls -t runs/default_model/lightning_logs/*/metrics.csv | head -1)" "$OUTDIR/train_metrics.csv" 2>/dev/null
cp "$(find runs/default_model -name metrics.json -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)" "$OUTDIR/" 2>/dev/null
echo "total: $(( $(date +%s) - start )) s"
