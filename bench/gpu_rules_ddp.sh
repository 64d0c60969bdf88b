#!/usr/bin/env bash
# Issue 7's network run and issue 4's multi-GPU run, in one call on a 2-GPU machine (kind nvidia-h100-x2):
#  1. a synthetic CAMUS-format set (300 patients, 256 px), generated once;
#  2. at the same time, GPU 0 trains the full network with the frame rule (paper) and GPU 1 with the token rule
#     (no value feedback: the whole clip's memory is one chunkwise call), same recipe and time budget; each is
#     tested on the held-out patients (metrics.json) and its log gives clips/s and peak memory;
#  3. both checkpoints stream 200-frame synthetic clips (bench/long_clip.py): Dice early vs late, memory size;
#  4. a short 2-GPU DDP fit of the frame-rule network (global batch 20 = 10 per GPU), clips/s against step 2.
# Usage on the GPU machine, from the repo root: bash bench/gpu_rules_ddp.sh OUTDIR [MAX_TIME] [DDP_TIME]
set -uo pipefail
OUTDIR=${1:-/tmp/gdkvm_gpu}; MAX_TIME=${2:-00:00:04:30}; DDP_TIME=${3:-00:00:01:15}
W=/tmp/gdkvm_rules; mkdir -p "$OUTDIR" $W
source bench/gpu_env.sh
CFG=configs/experiment/synthetic_camus_gpu.yaml
gpu_report 2>&1 | tee "$W/env.txt"
start=$(date +%s)
python3 -m gdkvm.cli synth camus --out data/synthetic_camus_300 --patients 300 --seed 0 --workers 28 2>&1 | tail -1
echo "synth: $(( $(date +%s) - start )) s" | tee -a "$W/env.txt"
frame_backend=auto
timeout 100 python3 -m pytest -q -x -p no:cacheprovider tests/ops/test_frame_gpu.py 2>&1 | tail -3 > "$W/frame_tests.txt"
grep -q " passed" "$W/frame_tests.txt" && ! grep -q "failed\|error" "$W/frame_tests.txt" || frame_backend=naive
echo "frame op backend: $frame_backend" | tee -a "$W/env.txt"

fit_and_test() {  # NAME GPU NET_YAML [extra LightningCLI args...]
  local name=$1 gpu=$2 net=$3; shift 3
  CUDA_VISIBLE_DEVICES=$gpu python3 -m gdkvm.cli fit --config $CFG --model.net "$net" "$@" \
    --trainer.logger lightning.pytorch.loggers.CSVLogger --trainer.logger.save_dir "runs/$name" \
    --trainer.max_time "$MAX_TIME" --trainer.default_root_dir "runs/$name" --trainer.enable_progress_bar false \
    > "$W/fit_$name.log" 2>&1
  CUDA_VISIBLE_DEVICES=$gpu python3 -m gdkvm.cli test --config $CFG --model.net "$net" "$@" \
    --trainer.default_root_dir "runs/$name" --trainer.enable_progress_bar false --ckpt_path best 2>&1 \
    | grep -v "^\s*$" | tail -12 > "$W/test_$name.txt"
}
fit_and_test frame 0 configs/model/gdkvm.yaml --model.net.init_args.ops_backend $frame_backend &
fit_and_test token 1 configs/model/gdkvm_token.yaml &
wait
echo "rules trained and tested: $(( $(date +%s) - start )) s" | tee -a "$W/env.txt"
newest() { find "$1" -name "$2" -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2; }
python3 bench/long_clip.py --frames 200 --clips 8 --size 256 --json "$OUTDIR/long_clip.json" \
  --ckpt "frame=$(newest runs/frame 'best*.ckpt')" "token=$(newest runs/token 'best*.ckpt')" 2>&1 | tail -3
CUDA_VISIBLE_DEVICES=0,1 python3 -m gdkvm.cli fit --config $CFG --trainer configs/trainer/ddp.yaml \
  --model.net.init_args.ops_backend $frame_backend --trainer.devices 2 --trainer.max_time "$DDP_TIME" \
  --trainer.logger lightning.pytorch.loggers.CSVLogger --trainer.logger.save_dir runs/ddp \
  --trainer.default_root_dir runs/ddp --trainer.enable_progress_bar false \
  > "$W/fit_ddp.log" 2>&1
echo "ddp done: $(( $(date +%s) - start )) s" | tee -a "$W/env.txt"
python3 bench/train_summary.py --json "$OUTDIR/train_summary.json" "frame=$(newest runs/frame metrics.csv)" \
  "token=$(newest runs/token metrics.csv)" "ddp2=$(newest runs/ddp metrics.csv)"
for name in frame token; do cp "$(newest runs/$name metrics.json)" "$OUTDIR/metrics_$name.json" 2>/dev/null; done
for f in "$W"/env.txt "$W"/frame_tests.txt "$W"/test_*.txt; do echo "== $f"; cat "$f"; done > "$OUTDIR/report.txt"
for f in "$W"/fit_*.log; do echo "== $f"; grep -v "^\s*$" "$f" | tail -8; done >> "$OUTDIR/report.txt"
cat "$OUTDIR/report.txt"
