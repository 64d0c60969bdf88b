#!/usr/bin/env bash
# Train the bundled default model on one GPU (issue 8): synthetic CAMUS-format AND EchoNet-format data (generated
# here with 16 processes, the same files configs/experiment/default_model.yaml would generate on first use), fit,
# held-out test (overall and per source), fp16 weights and metadata.json.
# Usage on the GPU machine, from the repo root: bash bench/gpu_default.sh OUTDIR
set -uo pipefail
OUTDIR=${1:-/tmp/gdkvm_gpu}
CONFIG=configs/experiment/default_model.yaml
WORKERS=${WORKERS:-16}
mkdir -p "$OUTDIR"
source bench/gpu_env.sh
gpu_report 2>&1 | tee "$OUTDIR/env.txt"
start=$(date +%s)
# counts, seed and folders as in $CONFIG (data.init_args); an existing non-empty folder is kept as it is
[ -d data/synthetic_camus_default ] || python3 -m gdkvm.cli synth camus --out data/synthetic_camus_default \
  --patients 300 --seed 1 --workers "$WORKERS" 2>&1 | tail -2
[ -d data/synthetic_echonet_default ] || python3 -m gdkvm.cli synth echonet --out data/synthetic_echonet_default \
  --videos 600 --seed 1 --workers "$WORKERS" 2>&1 | tail -2
echo "synth: $(( $(date +%s) - start )) s" | tee -a "$OUTDIR/env.txt"
# FRAME_BACKEND=naive trains with the torch reference of the frame-rule op (make_default.py ships "auto" either way)
python3 -m gdkvm.cli fit --config "$CONFIG" --model.net.init_args.ops_backend "${FRAME_BACKEND:-auto}" 2>&1 | grep -v "^\s*$" | tail -25 | tee "$OUTDIR/fit.txt"
echo "fit done: $(( $(date +%s) - start )) s"
python3 -m gdkvm.cli test --config "$CONFIG" --model.net.init_args.ops_backend "${FRAME_BACKEND:-auto}" --ckpt_path best 2>&1 | tail -40 | tee "$OUTDIR/test.txt"
python3 bench/make_default.py runs/default_model --out "$OUTDIR/default.pt" --metadata "$OUTDIR/metadata.json"
cp "$(ls -t runs/default_model/lightning_logs/*/metrics.csv | head -1)" "$OUTDIR/train_metrics.csv" 2>/dev/null
cp "$(find runs/default_model -name metrics.json -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)" "$OUTDIR/" 2>/dev/null
cp "$(find runs/default_model -name per_case.csv -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)" "$OUTDIR/" 2>/dev/null
echo "total: $(( $(date +%s) - start )) s"
