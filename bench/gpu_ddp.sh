#!/usr/bin/env bash
# Issue 4's multi-GPU check on a 2-GPU machine (kind nvidia-h100-x2), in one call: the full network on a small
# synthetic CAMUS-format set (256 px, batch 10 per GPU, bf16), a short 1-GPU fit then a short 2-GPU DDP fit, their
# clips/s and peak memory from the CSV logs (bench/train_summary.py); then the full network's inference speed.
# Usage on the GPU machine, from the repo root: bash bench/gpu_ddp.sh OUTDIR [FIT_TIME]
set -uo pipefail
OUTDIR=${1:-/tmp/gdkvm_gpu}; FIT_TIME=${2:-00:00:01:10}
mkdir -p "$OUTDIR"
source bench/gpu_env.sh >/dev/null 2>&1
CFG=configs/experiment/synthetic_camus_gpu.yaml
DATA="--data.init_args.root data/synthetic_camus_60 --data.init_args.synthetic 60"
gpu_report 2>&1 | tee "$OUTDIR/env.txt"
start=$(date +%s)
python3 -m gdkvm.cli synth camus --out data/synthetic_camus_60 --patients 60 --seed 0 --workers 30 2>&1 | tail -1
fit() {  # NAME DEVICES [extra args]
  local name=$1 devices=$2; shift 2
  python3 -m gdkvm.cli fit --config $CFG $DATA "$@" --trainer.devices "$devices" --trainer.max_time "$FIT_TIME" \
    --trainer.default_root_dir "runs/$name" --trainer.enable_progress_bar false --trainer.log_every_n_steps 2 \
    > "/tmp/fit_$name.log" 2>&1
  echo "$name: exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUTDIR/env.txt"
}
CUDA_VISIBLE_DEVICES=0 fit gpu1 1
CUDA_VISIBLE_DEVICES=0,1 fit gpu2 2 --trainer configs/trainer/ddp.yaml
newest() { find "$1" -name "$2" -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2; }
python3 bench/train_summary.py --json "$OUTDIR/train_summary.json" "1gpu=$(newest runs/gpu1 metrics.csv)" \
  "2gpu_ddp=$(newest runs/gpu2 metrics.csv)" | tee -a "$OUTDIR/env.txt"
grep -hiE "error|exception|ddp|world_size|MEMBER" /tmp/fit_gpu2.log | head -8 | tee -a "$OUTDIR/env.txt"
CUDA_VISIBLE_DEVICES=0 timeout 120 python3 bench/infer.py --models full --sizes 256 128 --batches 1 32 --frames 100 \
  --json "$OUTDIR/infer_full.json" 2>&1 | grep -E '^\{|^\||failed' | tee "$OUTDIR/infer_full.txt"
echo "total $(( $(date +%s) - start )) s"
