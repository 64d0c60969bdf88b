#!/usr/bin/env bash
# Issue 7's network run on ONE GPU, one memory rule per call (each call well under the 10-minute limit):
#   bash bench/gpu_rule.sh OUTDIR frame [MAX_TIME] [BACKEND]   # the paper's frame rule, then its test
#   bash bench/gpu_rule.sh OUTDIR token [MAX_TIME]             # token rule without value feedback (one op call per
#                                                              # clip), its test, then 200-frame clips through both
# Same data (300 synthetic CAMUS-format patients at 256 px, generated once and kept while the machine stays warm),
# same recipe and time budget (configs/experiment/synthetic_camus_gpu.yaml, validation every 100 steps). CSV logs give
# clips/s and peak memory (bench/train_summary.py). Results in OUTDIR (at most 5 files per call).
set -uo pipefail
OUTDIR=${1:-/tmp/gdkvm_gpu}; RULE=${2:-frame}; MAX_TIME=${3:-00:00:04:30}; BACKEND=${4:-auto}
W=/tmp/gdkvm_rules; mkdir -p "$OUTDIR" $W
source bench/gpu_env.sh
CFG=configs/experiment/synthetic_camus_gpu.yaml
DATA=data/synthetic_camus_300
gpu_report 2>&1 | tee "$W/env_$RULE.txt"
start=$(date +%s)
[ -f "$DATA/.complete" ] || python3 -m gdkvm.cli synth camus --out $DATA --patients 300 --seed 0 --workers 14 2>&1 | tail -1
touch "$DATA/.complete"
echo "data ready: $(( $(date +%s) - start )) s" | tee -a "$W/env_$RULE.txt"

if [ "$RULE" = frame ]; then
  NET=(--model.net configs/model/gdkvm.yaml --model.net.init_args.ops_backend "$BACKEND")
else
  NET=(--model.net configs/model/gdkvm_token.yaml)
fi
LOG=(--trainer.logger lightning.pytorch.loggers.CSVLogger --trainer.logger.save_dir "runs/$RULE")
python3 -m gdkvm.cli fit --config $CFG "${NET[@]}" "${LOG[@]}" --trainer.max_time "$MAX_TIME" \
  --trainer.val_check_interval 100 --trainer.default_root_dir "runs/$RULE" --trainer.enable_progress_bar false \
  > "$W/fit_$RULE.log" 2>&1
echo "fit: $(( $(date +%s) - start )) s" | tee -a "$W/env_$RULE.txt"
python3 -m gdkvm.cli test --config $CFG "${NET[@]}" "${LOG[@]}" --trainer.default_root_dir "runs/$RULE" \
  --trainer.enable_progress_bar false --ckpt_path best 2>&1 | grep -v "^\s*$" | tail -14 > "$W/test_$RULE.txt"
echo "test: $(( $(date +%s) - start )) s" | tee -a "$W/env_$RULE.txt"
newest() { find "$1" -name "$2" -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2; }
cp "$(newest "runs/$RULE" metrics.json)" "$OUTDIR/metrics_$RULE.json" 2>/dev/null
fit_csv=$(find "runs/$RULE" -name metrics.csv -path '*version_0*' | head -1)
python3 bench/train_summary.py --json "$OUTDIR/train_$RULE.json" "$RULE=$fit_csv" 2>&1 | tail -3

if [ "$RULE" = token ]; then  # long clips through every checkpoint this machine still has
  ckpts=()
  for name in frame token; do
    c=$(newest "runs/$name" 'best*.ckpt'); [ -n "$c" ] && ckpts+=("$name=$c")
  done
  timeout 150 python3 bench/long_clip.py --frames 200 --clips 8 --size 256 --json "$OUTDIR/long_clip.json" \
    --ckpt "${ckpts[@]}" 2>&1 | tail -6 | tee "$W/long_clip.txt"
fi
{ cat "$W/env_$RULE.txt"; echo "== test"; cat "$W/test_$RULE.txt"; echo "== fit log"; grep -v "^\s*$" "$W/fit_$RULE.log" \
  | grep -vi warn | tail -10; [ -f "$W/long_clip.txt" ] && { echo "== long clip"; cat "$W/long_clip.txt"; }; } \
  > "$OUTDIR/report_$RULE.txt"
cat "$OUTDIR/report_$RULE.txt"
