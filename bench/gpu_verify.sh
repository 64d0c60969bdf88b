#!/usr/bin/env bash
# GPU verification rounds, each one call of at most ~9.5 minutes on one H100 (kind nvidia-h100-x1):
#   bash bench/gpu_verify.sh OUTDIR frame  # frame-rule GPU tests (failures printed), op bench in fp32 and bf16
#   bash bench/gpu_verify.sh OUTDIR token  # token-rule GPU tests, op bench against fla-core (all variants)
#   bash bench/gpu_verify.sh OUTDIR ops    # both of the above in one call (about 9.5 minutes)
#   bash bench/gpu_verify.sh OUTDIR frame-bench [SHAPES...]  # only the frame op bench (fp32), up to 9 minutes
#   bash bench/gpu_verify.sh OUTDIR infer  # inference speed of the default and full networks (bf16, CUDA graphs)
#   bash bench/gpu_verify.sh OUTDIR probe  # token-rule GPU tests, per-kernel profile of both ops, ours-only token bench
#   bash bench/gpu_verify.sh OUTDIR tables # no tests: token bench against fla-core, frame bench at B10 T10 N256
#   bash bench/gpu_verify.sh OUTDIR tune   # frame tests + launch sweep; token tests, bench of the default vs scratch solve
#   bash bench/gpu_verify.sh OUTDIR stages # register-pressure switches of both ops (sweeps), fast-mode launch check
#   bash bench/gpu_verify.sh OUTDIR fast   # launch checks (both precisions), token table with the fast mode and fla-core
#   bash bench/gpu_verify.sh OUTDIR final  # token GPU tests, token issue table (high and fast) against fla-core
#   bash bench/gpu_verify.sh OUTDIR batch  # frame GPU tests; launch switches at B32 (recurrence warps, wide backward)
#   bash bench/gpu_verify.sh OUTDIR check  # launch checks (both precisions), token GPU tests, ours-only high vs fast
#   bash bench/gpu_verify.sh OUTDIR warps  # fast-mode launch checks at fewer warps per kernel, then its speed
#   bash bench/gpu_verify.sh OUTDIR fast2  # token GPU tests (fast mode included), fast checks at K 64-256, timings
#   bash bench/gpu_verify.sh OUTDIR ablate # where the token forward launches spend their time (both precisions)
#   bash bench/gpu_verify.sh OUTDIR fold   # token GPU tests of the switchable paths with the doubling solve; state-pass
#                                          # ablation; ours-only sweep of solve (regs/doubling) x o (fused/folded)
#   bash bench/gpu_verify.sh OUTDIR sweep2 # fast-mode checks with a 4-warp prep; ours-only sweep of split o and BV
#   bash bench/gpu_verify.sh OUTDIR graph  # token issue table with CUDA-graph timing on both sides (host time removed)
#   bash bench/gpu_verify.sh OUTDIR sweep3 # ours-only CUDA-graph sweep of split o and BV 32, then the graph mode
#   bash bench/gpu_verify.sh OUTDIR hilo   # token GPU tests, then the graph table (high, high+hilo0, fast; launches)
#   bash bench/gpu_verify.sh OUTDIR hilo2  # which state passes take bf16 head+tail products without a fault, then hilo
#   bash bench/gpu_verify.sh OUTDIR vside  # token GPU tests; hilo failure message; fast reverse pass at 4 warps; sweep
#   bash bench/gpu_verify.sh OUTDIR stab   # graph table (high, fast, fast+vdecay), then fast+vdecay in fresh processes
#   bash bench/gpu_verify.sh OUTDIR stages2 # ours-only graph sweep of segments and pipeline depth, launch checks of each
#   bash bench/gpu_verify.sh OUTDIR overlap # token GPU tests (pieces included); graph sweep of pieces, segments, stages
#   bash bench/gpu_verify.sh OUTDIR sliced # frame GPU tests; sweep of the value-sliced reverse walk; per-launch profile
#   bash bench/gpu_verify.sh OUTDIR sliced2 # the same with the one-launch walk, plus gradient errors against float64
#   bash bench/gpu_verify.sh OUTDIR wide   # wide Gram programs: kernel time per setting, forward variant GPU tests
#   bash bench/gpu_verify.sh OUTDIR gram   # Gram pre-pass grouping (gram_heads etc.) of the three-launch forward
#   bash bench/gpu_verify.sh OUTDIR fused2 # one-launch forward: variant tests, sweep of its switches and combinations
#   bash bench/gpu_verify.sh OUTDIR fused  # one-launch forward: its GPU tests, sweep, host and kernel profile, all tests
#   bash bench/gpu_verify.sh OUTDIR lean   # lean frame step vs the old one (kernel times, warps, stages), frame GPU tests
#   bash bench/gpu_verify.sh OUTDIR final3 # frame GPU tests, the frame issue table (all shapes), forward kernel profile
#   bash bench/gpu_verify.sh OUTDIR final4 # frame GPU tests but the oracle cases, the issue table in two parts
#   bash bench/gpu_verify.sh OUTDIR gramh  # Gram pre-pass in hand-made 3xTF32: kernel times, its GPU tests, inference/streaming/NaN tests
#   bash bench/gpu_verify.sh OUTDIR gramw  # forward kernel times of Gram / readout launch settings; hand-made 3xTF32 tests
#   bash bench/gpu_verify.sh OUTDIR final5 # forward and backward kernel times of the defaults, then every frame GPU test
#   bash bench/gpu_verify.sh OUTDIR final6 # kernel times, the precision-sensitive GPU tests, the T10 issue table
#   bash bench/gpu_verify.sh OUTDIR lcache # every frame GPU test with the launch cache on, then it off / on in turn
#   bash bench/gpu_verify.sh OUTDIR readw  # readout columns per program (kernel times), its GPU tests
#   bash bench/gpu_verify.sh OUTDIR plan   # every frame GPU test with the plan-keyed launches on, then off / on
#   bash bench/gpu_verify.sh OUTDIR plan2  # the frame GPU tests call 4 of the eleventh round did not reach (plan-keyed
#                                          # launches on), the off / on A/B, the T10 forward rows with them on
#   bash bench/gpu_verify.sh OUTDIR gramparts # the Gram pre-pass in parts, K^T V forms (bench/gram_layout_probe.py)
#   bash bench/gpu_verify.sh OUTDIR ownhead   # Gram projections against the own head's weights: A/B, GPU tests, T10 rows
#   bash bench/gpu_verify.sh OUTDIR next      # readout_bv and gram_kk_spread (not yet measured): A/B, then GPU tests
#   bash bench/gpu_verify.sh OUTDIR walkread  # the walk reading out O_t against the readout launch (bench/knob_ab.py),
#                                             # then every frame GPU test with it on
#   bash bench/gpu_verify.sh OUTDIR final7    # every frame GPU test, the forward's host profile, the T10 forward rows
#   bash bench/gpu_verify.sh OUTDIR beside    # the Gram beside the waiting walk: A/B, every frame GPU test with it on
#   bash bench/gpu_verify.sh OUTDIR hostov    # host time of the forward with the Gram beside the walk, and without
#   bash bench/gpu_verify.sh OUTDIR beside2   # the Gram and the readout beside the waiting walk: smoke, GPU test, A/B
#   bash bench/gpu_verify.sh OUTDIR beside3   # beside2 with self-resetting counters, then every frame GPU test with it
#   bash bench/gpu_verify.sh OUTDIR table15   # frame GPU tests listed in bench/_ids.txt (if any), issue table rows
#   bash bench/gpu_verify.sh OUTDIR sweep15   # walk_overlap 2's neighbours at B10 T10 N256, then issue table rows
#   bash bench/gpu_verify.sh OUTDIR fwd15     # the issue table's forward rows named in $SHAPES (default: B10 T10)
#   bash bench/gpu_verify.sh OUTDIR wide16    # B32: walk slices of two heads (128 walkers) so the Gram fits beside
#   bash bench/gpu_verify.sh OUTDIR verify16  # every frame GPU test with the defaults, then wide16
#   bash bench/gpu_verify.sh OUTDIR auto16    # walk_overlap 3 (readout beside where memory allows): tests, A/B, rows
#   bash bench/gpu_verify.sh OUTDIR cores17   # keep Gram programs off the walkers' SMs: A/B, profiles
#   bash bench/gpu_verify.sh OUTDIR tests18   # every frame GPU test (the kept launches of the overlapped forward)
#   bash bench/gpu_verify.sh OUTDIR host18    # host time against an older tree in _old/, then the T10 N256 rows
#   bash bench/gpu_verify.sh OUTDIR nap18     # spin_sleep A/B, then the overlap GPU tests with waits that nap
#   bash bench/gpu_verify.sh OUTDIR chain19   # token rule: fla-core's and our kernels per launch; one-product chain probe
#   bash bench/gpu_verify.sh OUTDIR const19   # chain probe; our forward launches with H, K, V constexpr (at e038df6)
#   bash bench/gpu_verify.sh OUTDIR tests19   # token GPU tests, then per-launch times of an older tree in _old/ and this one
#   bash bench/gpu_verify.sh OUTDIR table19   # the token issue table (graph timer, high and fast) against fla-core
#   bash bench/gpu_verify.sh OUTDIR bwd20     # prepass reverse pass: GPU tests, graph sweep with pipeline depths
#   bash bench/gpu_verify.sh OUTDIR step20    # step probe: fla's chunk step in our style, switch by switch, beside fla's
#   bash bench/gpu_verify.sh OUTDIR fast20    # fast mode's prep and reverse pass at 4 warps: launch checks, then timing
#   bash bench/gpu_verify.sh OUTDIR rest20    # prepass and its pipeline depth at V32 and K128 (one process per variant),
#                                             # then the step probe
#   bash bench/gpu_verify.sh OUTDIR final20   # fast-mode GPU tests (3-stage forward pass), the token issue table
#   bash bench/gpu_verify.sh OUTDIR step21    # step probe with key-side decay and our own split state pass on its inputs;
#                                             # fast mode with value-side or transposed key-side decay (checks, timing)
#   bash bench/gpu_verify.sh OUTDIR check22   # compute-sanitizer memcheck of fast mode (value and key side, 4-warp prep),
#                                             # then every token GPU test
#   bash bench/gpu_verify.sh OUTDIR prof22    # fast mode in fresh processes (graph timer); ncu of ours and fla-core
#   bash bench/gpu_verify.sh OUTDIR table22   # fast mode's prep at 1 warp (checks, timing), then the token issue table
#   bash bench/gpu_verify.sh OUTDIR prep23    # the split prep (GDKVM_TOKEN_PREP=split): memcheck, launch checks, GPU
#                                             # tests, timing in both precisions, ncu of its two launches
#   bash bench/gpu_verify.sh OUTDIR auto20    # GPU tests of the prepass default; sweep of it and of the forward pass's
#                                             # warps and stages (a process per variant)
# Carry .whl (training wheels and fla-core; see bench/gpu_env.sh) and .tcache (autotune results saved by an
# earlier call as OUTDIR/autotune.tgz, copied to .tcache/). Results land in OUTDIR, at most 8 files.
set -uo pipefail
OUTDIR=${1:-/tmp/gdkvm_gpu}; WHAT=${2:-ops}
mkdir -p "$OUTDIR"
source bench/gpu_env.sh >/dev/null 2>&1
gpu_report 2>&1 | tee "$OUTDIR/env.txt"
if [ "$WHAT" = frame ] || [ "$WHAT" = ops ]; then
  # a frame-only call has time for longer limits and a bf16 table
  if [ "$WHAT" = frame ]; then t_tests=272 t_bench=176; else t_tests=170 t_bench=110; fi
  timeout $t_tests python3 -m pytest -q -p no:cacheprovider -rf --tb=line tests/ops/test_frame_gpu.py 2>&1 \
    | tail -20 | tee "$OUTDIR/frame_tests.txt"
  timeout $t_bench python3 bench/ops_frame.py --compile-max-t 20 --json "$OUTDIR/bench_frame.json" 2>&1 \
    | grep -vi warn | tee "$OUTDIR/bench_frame.txt" | tail -14
  [ "$WHAT" = frame ] && timeout 80 python3 bench/ops_frame.py --dtype bf16 --shapes B10T10N256 B10T10N64 \
    --compile-max-t 20 --json "$OUTDIR/bench_frame_bf16.json" 2>&1 | grep -vi warn | tee "$OUTDIR/bench_frame_bf16.txt"
fi
if [ "$WHAT" = token ] || [ "$WHAT" = ops ]; then
  timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=line tests/ops/test_chunk_gpu.py 2>&1 \
    | tail -20 | tee "$OUTDIR/token_tests.txt"
  variants=$([ "$WHAT" = token ] && echo "high high+serial high+split")
  # shellcheck disable=SC2086
  timeout $([ "$WHAT" = token ] && echo 420 || echo 150) python3 bench/ops_token.py ${variants:+--variants $variants} \
    --json "$OUTDIR/bench_token.json" 2>&1 | grep -vE '^\{' \
    | tee "$OUTDIR/bench_token.txt" | tail -40
fi
if [ "$WHAT" = frame-bench ]; then  # torch.compile of the baselines takes most of the time: one shape ~3 minutes
  shift 2 2>/dev/null
  timeout 540 python3 bench/ops_frame.py --compile-max-t 20 ${*:+--shapes $*} --json "$OUTDIR/bench_frame.json" 2>&1 \
    | grep -vi warn | tee "$OUTDIR/bench_frame.txt"
fi
if [ "$WHAT" = probe ]; then  # about 7 minutes: where the time goes, without the peers' compile times
  timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=line tests/ops/test_chunk_gpu.py 2>&1 \
    | tail -20 | tee "$OUTDIR/token_tests.txt"
  timeout 150 python3 bench/profile_ops.py --json "$OUTDIR/profile.json" 2>&1 | grep -vi warn \
    | tee "$OUTDIR/profile.txt" | tail -30
  timeout 120 python3 bench/ops_token.py --no-fla --variants high high+serial --no-accuracy --json "$OUTDIR/bench_token.json" \
    2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench_token.txt" | tail -20
fi
if [ "$WHAT" = tables ]; then  # about 9.5 minutes on a fresh machine: fla-core's autotuning alone takes ~4 of them
  timeout 400 python3 bench/ops_token.py --variants high --fla-timeout 300 --json "$OUTDIR/bench_token.json" 2>&1 \
    | grep -vE '^\{' | tee "$OUTDIR/bench_token.txt" | tail -20
  timeout 150 python3 bench/ops_frame.py --shapes B10T10N256 --compile-max-t 20 \
    --json "$OUTDIR/bench_frame.json" 2>&1 | grep -vi warn | tee "$OUTDIR/bench_frame.txt" | tail -4
fi
if [ "$WHAT" = tune ]; then  # about 8 minutes: check and time kernel changes that are switches, no peers
  timeout 240 python3 -m pytest -q -p no:cacheprovider -rf --tb=line tests/ops/test_frame_gpu.py 2>&1 \
    | tail -12 | tee "$OUTDIR/frame_tests.txt"
  timeout 90 python3 bench/ops_frame.py --sweep-only --sweep-shapes B10T10N256 --json "$OUTDIR/sweep_frame.json" 2>&1 \
    | grep -E "^sweep|^best|^suggested" | tee "$OUTDIR/sweep_frame.txt" | grep -E "^best|^suggested"
  timeout 130 python3 -m pytest -q -p no:cacheprovider -rf --tb=line \
    tests/ops/test_chunk_gpu.py 2>&1 | tail -12 | tee "$OUTDIR/token_tests.txt"
  timeout 100 python3 bench/ops_token.py --no-fla --no-accuracy --variants high high+scratch \
    --json "$OUTDIR/bench_token.json" 2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench_token.txt" | tail -16
fi
if [ "$WHAT" = infer ]; then
  timeout 540 python3 bench/infer.py --models default full --sizes 256 128 112 --batches 1 32 --frames 100 \
    --json "$OUTDIR/infer.json" 2>&1 | grep -E '^\||^device|failed' | tee "$OUTDIR/infer.txt"
fi
if [ "$WHAT" = stages ]; then  # about 9 minutes: switches that cut registers (ptxas: 255 with spills), no peers
  timeout 210 python3 bench/ops_frame.py --sweep-only --sweep-shapes B10T10N256 B32T10N256 --sweep-knobs gram_stages \
    fast_stages readout_stages bwd_stages dkdv_stages gram_warps --json "$OUTDIR/sweep_frame.json" 2>&1 \
    | grep -E "^sweep|^best|^suggested" | tee "$OUTDIR/sweep_frame.txt" | grep -E "^best|^suggested"
  timeout 110 python3 bench/ops_token.py --check --check-cases B2T1000H4K64V64-h0 B4T2560H8K64V64 \
    --check-precisions fast --check-timeout 50 2>&1 | tee "$OUTDIR/check_fast.txt" | grep -E "RESULT|BAD|e2e|CRASH|Error"
  timeout 220 python3 bench/token_configs.py --shapes B4T10240H8K64V64 B8T4096H16K128V128 --timeout 45 \
    --json "$OUTDIR/token_configs.json" 2>&1 | tee "$OUTDIR/token_configs.txt" | grep -E "^best"
fi
if [ "$WHAT" = fast ]; then  # about 9.5 minutes: launch checks of both precisions, then the issue table with fast mode
  timeout 170 python3 bench/ops_token.py --check --check-cases B4T2560H8K64V64 B2T1000H4K64V64-h0 \
    B1T2000H2K64V32-slowgate B2T500H3K100V60-chan --check-precisions fast high --check-timeout 45 2>&1 \
    | tee "$OUTDIR/check.txt" | grep -E "RESULT|BAD|e2e|CRASH|Error"
  timeout 380 python3 bench/ops_token.py --variants high fast --fla-timeout 300 --json "$OUTDIR/bench_token.json" 2>&1 \
    | grep -vE '^\{' | tee "$OUTDIR/bench_token.txt" | tail -24
fi
if [ "$WHAT" = final ]; then  # about 9.5 minutes: token GPU tests, then the token issue table (fla-core ~5 of them)
  # the switchable-path cases take 135 s alone: run them with FINAL_K="segments_and_split" in a call of their own
  timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=line tests/ops/test_chunk_gpu.py \
    -k "${FINAL_K:-not segments_and_split}" 2>&1 | tail -20 | tee "$OUTDIR/token_tests.txt"
  timeout 420 python3 bench/ops_token.py --variants high fast --fla-timeout 300 --json "$OUTDIR/bench_token.json" \
    2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench_token.txt" | tail -30
fi
if [ "$WHAT" = batch ]; then  # about 6.5 minutes: frame GPU tests, then switches that matter at B32 (more programs than SMs)
  timeout 250 python3 -m pytest -q -p no:cacheprovider -rf --tb=line tests/ops/test_frame_gpu.py 2>&1 \
    | tail -12 | tee "$OUTDIR/frame_tests.txt"
  timeout 150 python3 bench/ops_frame.py --sweep-only --sweep-shapes B32T10N256 B10T10N256 --sweep-knobs fast_warps \
    bwd_wide --json "$OUTDIR/sweep_frame.json" 2>&1 | grep -E "^sweep|^best" | tee "$OUTDIR/sweep_frame.txt"
fi
if [ "$WHAT" = check ]; then  # about 7 minutes: is each precision right launch by launch, and what does fast buy
  timeout 170 python3 bench/ops_token.py --check --check-cases B4T2560H8K64V64 B2T1000H4K64V64-h0 \
    B1T2000H2K64V32-slowgate B2T500H3K100V60-chan --check-precisions fast high --check-timeout 45 2>&1 \
    | tee "$OUTDIR/check.txt" | grep -E "RESULT|BAD|e2e|CRASH|Error"
  timeout 140 python3 -m pytest -q -p no:cacheprovider -rf --tb=line tests/ops/test_chunk_gpu.py 2>&1 \
    | tail -20 | tee "$OUTDIR/token_tests.txt"
  timeout 130 python3 bench/ops_token.py --no-fla --no-accuracy --variants high fast --json "$OUTDIR/bench_token.json" \
    2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench_token.txt" | tail -24
fi
if [ "$WHAT" = warps ]; then  # about 6 minutes: does fast mode (bf16 intermediates) pass with fewer warps per kernel?
  w2='{"prep":{"num_warps":2},"state":{"num_warps":2},"state_bwd":{"num_warps":2},"chunk_bwd":{"num_warps":2}}'
  w2b='{"prep":{"num_warps":2},"state_bwd":{"num_warps":2},"chunk_bwd":{"num_warps":4}}'
  w2c='{"prep":{"num_warps":2},"state_bwd":{"num_warps":2}}'
  for cfg in "$w2" "$w2b" "$w2c"; do
    echo "== GDKVM_TOKEN_CONFIG=$cfg" | tee -a "$OUTDIR/check.txt"
    GDKVM_TOKEN_CONFIG="$cfg" timeout 75 python3 bench/ops_token.py --check --check-cases B4T2560H8K64V64 \
      B2T1000H4K64V64-h0 B1T2000H2K64V32-slowgate --check-precisions fast --check-timeout 30 2>&1 \
      | tee -a "$OUTDIR/check.txt" | grep -E "RESULT|BAD|e2e|CRASH|Error"
  done
  timeout 60 python3 bench/ops_token.py --no-fla --no-accuracy --variants high --json "$OUTDIR/bench_high.json" \
    2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench_high.txt" | tail -8
  GDKVM_TOKEN_CONFIG="$w2b" timeout 70 python3 bench/ops_token.py --no-fla --no-accuracy --variants fast \
    --json "$OUTDIR/bench_fast.json" 2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench_fast.txt" | tail -8
fi
if [ "$WHAT" = fast2 ]; then  # about 5.5 minutes: fast mode with its 2-warp kernels, tested and timed (no peers)
  timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=line tests/ops/test_chunk_gpu.py 2>&1 \
    | tail -20 | tee "$OUTDIR/token_tests.txt"
  timeout 120 python3 bench/ops_token.py --check --check-cases B2T1500H4K128V128-zerogate B1T300H2K256V96-h0 \
    B4T2560H8K64V64 B1T2000H2K64V32-slowgate B1T300H2K64V48-chan-strong --check-precisions fast --check-timeout 40 \
    2>&1 | tee "$OUTDIR/check.txt" | grep -E "RESULT|BAD|e2e|CRASH|Error"
  timeout 80 python3 bench/ops_token.py --no-fla --no-accuracy --variants high fast --json "$OUTDIR/bench.json" \
    2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench.txt" | tail -14
  GDKVM_TOKEN_CONFIG='{"prep":{"num_warps":2}}' timeout 45 python3 bench/ops_token.py --no-fla --no-accuracy \
    --variants high --json "$OUTDIR/bench_prep2.json" 2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench_prep2.txt" | tail -8
fi
if [ "$WHAT" = ablate ]; then  # about 5 minutes: each forward launch with one part removed (wrong results, timing only)
  timeout 200 python3 bench/ablate_token.py --json "$OUTDIR/ablate_high.json" 2>&1 | tee "$OUTDIR/ablate_high.txt" \
    | grep -E "^\|"
  GDKVM_TOKEN_PRECISION=fast timeout 120 python3 bench/ablate_token.py --shapes B4T10240H8K64V64 \
    --json "$OUTDIR/ablate_fast.json" 2>&1 | tee "$OUTDIR/ablate_fast.txt" | grep -E "^\|"
fi
if [ "$WHAT" = fold ]; then  # about 8 minutes
  GDKVM_TOKEN_SOLVE=doubling timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=line -s \
    tests/ops/test_chunk_gpu.py -k "segments_and_split" 2>&1 | grep -E "passed|failed|FAIL|Error|^(auto|1|6) " \
    | tail -30 | tee "$OUTDIR/token_tests.txt"
  timeout 80 python3 bench/ablate_token.py --launches state_fwd --shapes B4T10240H8K64V64 \
    --json "$OUTDIR/ablate_state.json" 2>&1 | grep -E "^\|" | tee "$OUTDIR/ablate_state.txt"
  timeout 330 python3 bench/ops_token.py --no-fla --shapes B4T2560H8K64V64 B4T10240H8K64V64 B1T25600H8K64V32 \
    B8T4096H16K128V128 --variants high high+doubling high+folded high+doubling+folded fast fast+doubling+folded \
    --json "$OUTDIR/bench_token.json" 2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench_token.txt" | tail -60
fi
if [ "$WHAT" = sweep2 ]; then  # about 5 minutes (the 4-warp fast prep crashed at V 32 on an H200: check only)
  GDKVM_TOKEN_CONFIG='{"prep":{"num_warps":4}}' timeout 100 python3 bench/ops_token.py --check --check-cases \
    B4T2560H8K64V64 B2T1000H4K64V64-h0 B1T2000H2K64V32-slowgate --check-precisions fast --check-timeout 30 2>&1 \
    | tee "$OUTDIR/check.txt" | grep -E "RESULT|BAD|e2e|CRASH|Error"
  timeout 280 python3 bench/ops_token.py --no-fla --no-accuracy --shapes B4T10240H8K64V64 B1T25600H8K64V32 \
    B8T4096H16K128V128 B4T2560H8K128V128 --variants high fast high+split fast+split high+bv32 fast+bv32 --json "$OUTDIR/bench_token.json" 2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench_token.txt" | tail -70
fi
if [ "$WHAT" = overlap ]; then  # about 8.5 minutes: never run yet
  timeout 270 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_chunk_gpu.py 2>&1 \
    | tail -15 | tee "$OUTDIR/token_tests.txt"
  timeout 220 python3 bench/ops_token.py --timer graph --no-fla --no-accuracy --shapes B4T2560H8K64V64 \
    B4T10240H8K64V64 B4T2560H8K128V128 B8T4096H16K128V128 --variants high high+ov2 high+ov4 high+ov8 high+seg2 \
    high+sb2 high+prep8 fast fast+ov4 --json "$OUTDIR/sweep_graph.json" 2>&1 | grep -vE '^\{' \
    | tee "$OUTDIR/sweep_graph.txt" | tail -50
fi
if [ "$WHAT" = lean ]; then  # about 9 minutes: lean walk vs the old one (kernel times), frame GPU tests, T10 table
  for set in "fast_lean=0" "fast_lean=1" "fast_lean=1 fast_warps=8" "fast_lean=1 fast_wide_slices=0"; do
    shapes="B10T10N256 B10T10N64 B32T10N256 B1T200N64"
    [ "$set" = "fast_lean=1 fast_wide_slices=0" ] && shapes=B32T10N256
    # shellcheck disable=SC2086
    timeout 60 python3 bench/profile_ops.py --rule frame --modes fwd --shapes $shapes --iters 10 --set $set 2>&1 \
      | grep -A6 "^##" | grep -E "^##|parallel|lean|gram|readout" | sed "s/^/[$set] /"
  done | tee "$OUTDIR/profile.txt"
  timeout 290 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py 2>&1 | tail -25 \
    | tee "$OUTDIR/frame_tests.txt"
  timeout 100 python3 bench/ops_frame.py --compile-max-t 20 --shapes B10T10N64 B10T10N256 --json \
    "$OUTDIR/bench_frame.json" 2>&1 | grep -vi warn | tee "$OUTDIR/bench_frame.txt" | tail -14
fi
if [ "$WHAT" = final3 ]; then  # about 9 minutes: all frame GPU tests, the frame issue table, kernel profile
  timeout 290 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py 2>&1 | tail -25 \
    | tee "$OUTDIR/frame_tests.txt"
  timeout 200 python3 bench/ops_frame.py --compile-max-t 20 --json "$OUTDIR/bench_frame.json" 2>&1 | grep -vi warn \
    | tee "$OUTDIR/bench_frame.txt" | tail -14
  timeout 60 python3 bench/profile_ops.py --rule frame --modes fwd --shapes B10T10N256 B10T10N64 B32T10N256 \
    --iters 10 2>&1 | tee "$OUTDIR/profile.txt" | grep "^##"
fi
if [ "$WHAT" = final4 ]; then  # about 9 minutes: the frame GPU tests after the oracle cases, the issue table
  timeout 230 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py \
    -k "not test_triton_matches_reference" 2>&1 | tail -25 | tee "$OUTDIR/frame_tests.txt"
  timeout 160 python3 bench/ops_frame.py --compile-max-t 20 --shapes B10T10N64 B32T10N256 --json \
    "$OUTDIR/bench_frame.json" 2>&1 | grep -vi warn | tee "$OUTDIR/bench_frame.txt" | tail -8
  timeout 130 python3 bench/ops_frame.py --compile-max-t 20 --shapes B1T200N64 B1T100N256 --json \
    "$OUTDIR/bench_frame_long.json" 2>&1 | grep -vi warn | tee "$OUTDIR/bench_frame_long.txt" | tail -8
fi
if [ "$WHAT" = gramh ]; then  # about 6 minutes: Gram pre-pass in hand-made 3xTF32 (kernel times), its GPU tests
  for set in "gram_hand3=0" "gram_hand3=1"; do
    # shellcheck disable=SC2086
    timeout 60 python3 bench/profile_ops.py --rule frame --modes fwd fwdbwd --shapes B10T10N256 B10T10N64 B32T10N256 \
      --iters 10 --set $set 2>&1 | grep -A8 "^##" | grep -E "^##|gram|lean|readout" | sed "s/^/[$set] /"
  done | tee "$OUTDIR/profile.txt"
  timeout 330 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py \
    -k "hand or no_narrow or inference or streaming or auto_backend or nan_guard" 2>&1 | tail -8 \
    | tee "$OUTDIR/frame_tests.txt"
fi
if [ "$WHAT" = wide ]; then  # about 6 minutes: wide Gram programs (kernel times per setting), their GPU tests
  for set in "gram_cols=0" "gram_cols=64" "gram_cols=128" "gram_cols=256" "gram_cols=128 gram_wide_warps=4" \
             "gram_cols=256 gram_wide_warps=4" "gram_cols=128 gram_wide_bn=32" "gram_cols=128 gram_stages=3"; do
    # shellcheck disable=SC2086
    timeout 40 python3 bench/profile_ops.py --rule frame --modes fwd --shapes B10T10N256 B10T10N64 B32T10N256 \
      --iters 10 --set $set 2>&1 | grep -A5 "^##" | grep -E "^##|gram" | sed "s/^/[$set] /"
  done | tee "$OUTDIR/profile.txt"
  timeout 60 python3 bench/profile_ops.py --rule frame --modes fwdbwd --shapes B10T10N256 B32T10N256 --iters 10 \
    --set gram_cols=128 2>&1 | grep -E "^##|gram" | tee -a "$OUTDIR/profile.txt"
  timeout 200 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py \
    -k "forward_variants" 2>&1 | tail -8 | tee "$OUTDIR/wide_tests.txt"
fi
if [ "$WHAT" = gram ]; then  # about 6 minutes: Gram pre-pass grouping of the three-launch forward, kernel times
  timeout 200 python3 bench/ops_frame.py --sweep-only --sweep-shapes B10T10N256 B10T10N64 B32T10N256 --sweep-knobs \
    gram_heads gram_tile gram_warps fused_combo --json "$OUTDIR/sweep_frame.json" 2>&1 | grep -E "^sweep|^best" \
    | tee "$OUTDIR/sweep_frame.txt"
  for heads in 1 2 4; do
    timeout 40 python3 bench/profile_ops.py --rule frame --modes fwd --shapes B10T10N256 B10T10N64 B32T10N256 \
      --iters 10 --set gram_heads=$heads 2>&1 | grep -A5 "^##" | grep -E "^##|gram|parallel|readout" | sed "s/^/gram_heads=$heads /"
  done | tee "$OUTDIR/profile.txt"
fi
if [ "$WHAT" = fused2 ]; then  # about 8 minutes: one-launch forward switches and their combinations
  timeout 100 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py \
    -k "forward_variants" 2>&1 | tail -8 | tee "$OUTDIR/fused_tests.txt"
  timeout 260 python3 bench/ops_frame.py --sweep-only --sweep-shapes B10T10N256 B10T10N64 B1T200N64 --sweep-knobs \
    fused_fwd fused_per_sm fused_read_cols fused_lookahead fused_combo gram_heads --json "$OUTDIR/sweep_frame.json" \
    2>&1 | grep -E "^sweep|^best" | tee "$OUTDIR/sweep_frame.txt"
  timeout 60 python3 bench/profile_ops.py --rule frame --modes fwd --shapes B10T10N256 B10T10N64 \
    --iters 10 --json "$OUTDIR/profile.json" 2>&1 | tee "$OUTDIR/profile.txt" | grep -A3 "^##"
fi
if [ "$WHAT" = fused ]; then  # about 9 minutes
  timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py \
    -k "forward_variants or cooperative" 2>&1 | tail -15 | tee "$OUTDIR/fused_tests.txt"
  timeout 130 python3 bench/ops_frame.py --sweep-only --sweep-shapes B10T10N256 B10T10N64 B1T200N64 --sweep-knobs \
    fused_fwd fused_sync fused_per_sm gram_heads --json "$OUTDIR/sweep_frame.json" 2>&1 | grep -E "^sweep|^best" \
    | tee "$OUTDIR/sweep_frame.txt"
  for mode in fwd fwdbwd; do timeout 25 python3 bench/host_profile.py --mode $mode --calls 200 2>&1 | head -12; done \
    | tee "$OUTDIR/host.txt"
  timeout 50 python3 bench/profile_ops.py --rule frame --modes fwd --shapes B10T10N256 B10T10N64 B32T10N256 \
    --iters 10 --json "$OUTDIR/profile.json" 2>&1 | tee "$OUTDIR/profile.txt" | tail -30
  timeout 200 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py 2>&1 \
    | tail -15 | tee "$OUTDIR/frame_tests.txt"
fi
if [ "$WHAT" = sliced2 ]; then  # about 8 minutes
  timeout 250 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py 2>&1 \
    | tail -15 | tee "$OUTDIR/frame_tests.txt"
  timeout 60 python3 bench/frame_grad_errors.py 2>&1 | tail -14 | tee "$OUTDIR/grad_errors.txt"
  timeout 130 python3 bench/ops_frame.py --sweep-only --sweep-shapes B10T10N256 B32T10N256 B1T200N64 --sweep-knobs \
    bwd_persistent bwd_slice bwd_slice_warps --json "$OUTDIR/sweep_frame.json" 2>&1 | grep -E "^sweep|^best" \
    | tee "$OUTDIR/sweep_frame.txt"
  timeout 60 python3 bench/profile_ops.py --rule frame --modes fwdbwd --shapes B10T10N256 B32T10N256 B1T200N64 \
    --iters 10 --json "$OUTDIR/profile.json" 2>&1 | tee "$OUTDIR/profile.txt" | grep -E "^##|slice|outer|gate_log"
fi
if [ "$WHAT" = sliced ]; then  # about 7 minutes: the frame backward by value slices, one launch per frame
  timeout 250 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py 2>&1 \
    | tail -15 | tee "$OUTDIR/frame_tests.txt"
  timeout 150 python3 bench/ops_frame.py --sweep-only --sweep-shapes B10T10N256 B32T10N256 B1T200N64 --sweep-knobs \
    bwd_sliced bwd_slice bwd_slice_warps --json "$OUTDIR/sweep_frame.json" 2>&1 | grep -E "^sweep|^best" \
    | tee "$OUTDIR/sweep_frame.txt"
  timeout 100 python3 bench/profile_ops.py --rule frame --shapes B10T10N256 B32T10N256 B1T200N64 --iters 10 \
    --json "$OUTDIR/profile.json" 2>&1 | tee "$OUTDIR/profile.txt" | tail -60
fi
if [ "$WHAT" = stages2 ]; then  # about 6 minutes
  timeout 170 python3 bench/ops_token.py --timer graph --no-fla --no-accuracy --shapes B4T2560H8K64V64 \
    B4T10240H8K64V64 B4T2560H8K128V128 B8T4096H16K128V128 --variants high high+seg2 high+sb2 high+sf3 fast+seg2 \
    --json "$OUTDIR/sweep_graph.json" 2>&1 | grep -vE '^\{' | tee "$OUTDIR/sweep_graph.txt" | tail -45
  for pair in "GDKVM_TOKEN_SEGMENTS=2" 'GDKVM_TOKEN_CONFIG={"state_bwd":{"num_stages":2}}' \
    'GDKVM_TOKEN_CONFIG={"state":{"num_stages":3}}'; do
    echo "== $pair" >> "$OUTDIR/check.txt"
    env "$pair" timeout 60 python3 bench/ops_token.py --check --check-cases B2T1000H4K64V64-h0 \
      B2T1500H4K128V128-zerogate B1T2000H2K64V32-slowgate --check-precisions high --check-timeout 25 2>&1 \
      | grep -E "RESULT|e2e|CRASH|TIMEOUT|check:" >> "$OUTDIR/check.txt"
  done
  cat "$OUTDIR/check.txt"
fi
if [ "$WHAT" = stab ]; then  # about 7 minutes: the issue table with the defaults, then value-side fast mode rerun
  timeout 240 python3 bench/ops_token.py --timer graph --variants high fast fast+vdecay --fla-timeout 200 \
    --json "$OUTDIR/bench_token_graph.json" 2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench_token_graph.txt" | tail -40
  for i in 1 2 3 4; do
    echo "== run $i" >> "$OUTDIR/stab.txt"
    timeout 50 python3 bench/ops_token.py --timer graph --no-fla --no-accuracy --no-launches --variants fast+vdecay \
      --shapes B4T2560H8K64V64 B4T10240H8K64V64 B1T25600H8K64V32 2>&1 | grep -E "^\| B|Error|error" >> "$OUTDIR/stab.txt"
  done
  cat "$OUTDIR/stab.txt"
fi
if [ "$WHAT" = vside ]; then  # about 8.5 minutes: the value-side decay of the state passes, verified and swept
  timeout 240 python3 -m pytest -q -p no:cacheprovider -rf --tb=line tests/ops/test_chunk_gpu.py 2>&1 \
    | tail -20 | tee "$OUTDIR/token_tests.txt"
  GDKVM_TOKEN_HILO=fwd timeout 40 python3 -m pytest -x -q -p no:cacheprovider --tb=short tests/ops/test_chunk_gpu.py \
    -k "oracle and B2-T1000" 2>&1 | grep -E "^E |assert|Error|passed|failed" | head -20 | tee "$OUTDIR/diag.txt"
  GDKVM_TOKEN_CONFIG='{"state_bwd":{"num_warps":4}}' timeout 70 python3 bench/ops_token.py --check --check-cases \
    B2T1000H4K64V64-h0 B1T2000H2K64V32-slowgate B1T300H2K64V48-chan-strong --check-precisions fast \
    --check-timeout 30 2>&1 | tee "$OUTDIR/check.txt" | grep -E "RESULT|BAD|e2e|CRASH|Error"
  timeout 160 python3 bench/ops_token.py --timer graph --no-fla --no-accuracy --variants fast fast+split fast+sbwd4 \
    high+split --json "$OUTDIR/sweep_graph.json" 2>&1 | grep -vE '^\{' | tee "$OUTDIR/sweep_graph.txt" | tail -45
fi
if [ "$WHAT" = hilo2 ]; then  # GPU oracle tests per GDKVM_TOKEN_HILO setting (blocking launches), first clean one kept
  pick=""
  for h in fwd both bwd off; do
    echo "== GDKVM_TOKEN_HILO=$h" | tee -a "$OUTDIR/diag.txt"
    CUDA_LAUNCH_BLOCKING=1 GDKVM_TOKEN_HILO=$h timeout 60 python3 -m pytest -x -q -p no:cacheprovider --tb=line \
      tests/ops/test_chunk_gpu.py -k "oracle or long_v32" 2>&1 | tail -4 > "$OUTDIR/diag_one.txt"
    cat "$OUTDIR/diag_one.txt" | tee -a "$OUTDIR/diag.txt"
    if grep -q " passed" "$OUTDIR/diag_one.txt" && ! grep -qE "failed|error" "$OUTDIR/diag_one.txt"; then
      [ -z "$pick" ] && pick=$h
    fi
  done
  rm -f "$OUTDIR/diag_one.txt"
  echo "GDKVM_TOKEN_HILO kept: ${pick:-none}" | tee -a "$OUTDIR/diag.txt"
  export GDKVM_TOKEN_HILO=${pick:-off}
  WHAT=hilo
fi
if [ "$WHAT" = hilo ]; then  # about 9.5 minutes with the autotune cache carried (.tcache)
  timeout 180 python3 -m pytest -q -p no:cacheprovider -rf --tb=line tests/ops/test_chunk_gpu.py 2>&1 \
    | tail -20 | tee "$OUTDIR/token_tests.txt"
  timeout 250 python3 bench/ops_token.py --timer graph --variants high high+hilo0 fast --fla-timeout 200 \
    --json "$OUTDIR/bench_token_graph.json" 2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench_token_graph.txt" | tail -40
fi
if [ "$WHAT" = sweep3 ]; then  # about 9.5 minutes: kernel-time sweep of the state-pass variants, then the graph table
  timeout 200 python3 bench/ops_token.py --timer graph --no-fla --no-accuracy --variants high fast high+split \
    fast+split high+bv32 fast+bv32 high+split+bv32 fast+split+bv32 --json "$OUTDIR/sweep_graph.json" 2>&1 \
    | grep -vE '^\{' | tee "$OUTDIR/sweep_graph.txt" | tail -60
  WHAT=graph
fi
if [ "$WHAT" = graph ]; then  # about 7 minutes (fla-core's autotuning most of it, unless .tcache is carried)
  timeout 380 python3 bench/ops_token.py --timer graph --variants high fast --fla-timeout 330 --no-launches \
    --json "$OUTDIR/bench_token_graph.json" 2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench_token_graph.txt" | tail -30
fi
save_autotune "$OUTDIR"
if [ "$WHAT" = gramw ]; then  # about 7 minutes: Gram and readout settings by kernel time (fwd), then their GPU tests
  for set in "gram_hand3=1" "readout_hand3=1" "readout_hand3=1 readout_warps=8" "readout_hand3=1 readout_stages=2" \
    "gram_cols=64" "gram_cols=128" "gram_cols=128 gram_wide_warps=4" "gram_cols=128 gram_wide_bn=32" \
    "gram_stages=1" "gram_stages=3" "gram_heads=2" "gram_warps=8"; do
    # shellcheck disable=SC2086
    timeout 50 python3 bench/profile_ops.py --rule frame --modes fwd --shapes B10T10N256 B10T10N64 B32T10N256 \
      --iters 10 --set $set 2>&1 | grep -A4 "^##" | grep -E "^##|gram|lean|readout" | sed "s/^/[$set] /"
  done | tee "$OUTDIR/profile.txt"
  timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py -k "3xtf32" 2>&1 \
    | tail -8 | tee "$OUTDIR/frame_tests.txt"
fi
if [ "$WHAT" = final5 ]; then  # about 8 minutes: kernel times of the defaults, every frame GPU test
  timeout 80 python3 bench/profile_ops.py --rule frame --modes fwd fwdbwd \
    --shapes B10T10N256 B10T10N64 B32T10N256 B1T200N64 --iters 10 2>&1 | grep -vi warn | tee "$OUTDIR/profile.txt"
  timeout 470 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py 2>&1 | tail -25 \
    | tee "$OUTDIR/frame_tests.txt"
fi
if [ "$WHAT" = final6 ]; then  # about 9 minutes: kernel times, precision-sensitive GPU tests, T10 table (fwd, fwdbwd)
  timeout 60 python3 bench/profile_ops.py --rule frame --modes fwd --shapes B10T10N256 B10T10N64 B32T10N256 \
    --iters 10 2>&1 | grep -vi warn | tee "$OUTDIR/profile.txt"
  timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py \
    -k "ill_cond or streaming or 3xtf32 or inference or nan_guard or no_narrow" 2>&1 | tail -12 \
    | tee "$OUTDIR/frame_tests.txt"
  timeout 330 python3 bench/ops_frame.py --compile-max-t 20 --shapes B10T10N256 B10T10N64 \
    --json "$OUTDIR/bench_frame.json" 2>&1 | grep -vi warn | tee "$OUTDIR/bench_frame.txt"
fi
if [ "$WHAT" = lcache ]; then  # about 8 minutes: every frame GPU test with the launch cache on, then it off / on
  GDKVM_FRAME_LAUNCH_CACHE=1 timeout 400 python3 -m pytest -q -p no:cacheprovider -rf --tb=short \
    tests/ops/test_frame_gpu.py 2>&1 | tail -12 | tee "$OUTDIR/frame_tests.txt"
  timeout 120 python3 bench/launch_cache_ab.py --shapes B10T10N64 B10T10N256 B32T10N256 --rounds 3 2>&1 \
    | grep -vi warn | tee "$OUTDIR/host.txt"
fi
if [ "$WHAT" = plan ]; then  # about 7 minutes: every frame GPU test with the plan-keyed launches on, then off / on
  GDKVM_FRAME_PLAN_LAUNCH=1 timeout 330 python3 -m pytest -q -p no:cacheprovider -rf --tb=short \
    tests/ops/test_frame_gpu.py 2>&1 | tail -12 | tee "$OUTDIR/frame_tests.txt"
  timeout 90 python3 bench/launch_cache_ab.py --knob plan_launch --shapes B10T10N64 B10T10N256 B32T10N256 \
    --modes fwd --rounds 5 2>&1 | grep -vi warn | tee "$OUTDIR/host.txt"
fi
if [ "$WHAT" = plan2 ]; then  # about 9.5 minutes: the GPU tests the plan-keyed launches have not run, the T10 forwards
  GDKVM_FRAME_PLAN_LAUNCH=1 timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short \
    tests/ops/test_frame_gpu.py -k "h0-three-launches-lean-walk-8-warps or h0-gram-hand or h0-gram-compilers or h0-readout or inference or streaming or auto_backend or nan_guard or narrow_tf32" \
    2>&1 | tail -12 | tee "$OUTDIR/frame_tests.txt"
  timeout 60 python3 bench/launch_cache_ab.py --knob plan_launch --shapes B10T10N64 B10T10N256 B32T10N256 \
    --modes fwd --rounds 5 2>&1 | grep -vi warn | tee "$OUTDIR/host.txt"
  GDKVM_FRAME_PLAN_LAUNCH=1 timeout 300 python3 bench/ops_frame.py --compile-max-t 20 --rounds 3 --modes fwd \
    --shapes B10T10N64 B10T10N256 B32T10N256 --json "$OUTDIR/bench_frame.json" 2>&1 | grep -vi warn \
    | tee "$OUTDIR/bench_frame.txt"
fi
if [ "$WHAT" = readw ]; then  # about 3 minutes: readout programs of 1, 2 and 4 column tiles (fwd kernel times), tests
  for set in "readout_cols=64" "readout_cols=128" "readout_cols=256"; do
    timeout 50 python3 bench/profile_ops.py --rule frame --modes fwd --shapes B10T10N256 B10T10N64 B32T10N256 \
      --iters 10 --set $set 2>&1 | grep -A5 "^##" | grep -E "^##|readout" | sed "s/^/[$set] /"
  done | tee "$OUTDIR/profile.txt"
  timeout 100 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py -k "readout" 2>&1 \
    | tail -8 | tee "$OUTDIR/frame_tests.txt"
fi
if [ "$WHAT" = walkread ]; then  # about 8 minutes: the walk reading out O_t (walk_readout) against the readout launch
  timeout 200 python3 bench/knob_ab.py --configs walk_readout=0 walk_readout=2 walk_readout=2,walk_read_tile=2048 \
    walk_readout=2,fast_stages=1 --shapes B10T10N256 B10T10N64 B32T10N256 B1T100N256 B1T200N64 --modes fwd \
    --rounds 3 2>&1 | grep -vi warn | tee "$OUTDIR/ab.txt"
  timeout 60 python3 bench/knob_ab.py --configs walk_readout=0 walk_readout=2 --shapes B10T10N256 B32T10N256 \
    --modes fwdbwd --rounds 3 2>&1 | grep -vi warn | tee "$OUTDIR/ab_bwd.txt"
  GDKVM_FRAME_WALK_READOUT=2 timeout 290 python3 -m pytest -q -p no:cacheprovider -rf --tb=short \
    tests/ops/test_frame_gpu.py 2>&1 | tail -15 | tee "$OUTDIR/frame_tests.txt"
fi
if [ "$WHAT" = gramparts ]; then  # about 2 minutes: the Gram pre-pass in parts and K^T V forms
  timeout 150 python3 bench/gram_layout_probe.py 2>&1 | grep -vi warn | tee "$OUTDIR/probe.txt" | grep "pre-pass"
fi
if [ "$WHAT" = ownhead ]; then  # about 9.5 minutes: the Gram's own-head projections off / on, every frame GPU test,
  # the two short-of-target T10 forward rows of the issue table
  timeout 100 python3 bench/knob_ab.py --configs gram_own_head=0 gram_own_head=1 --shapes B10T10N256 B32T10N256 \
    B10T10N64 B1T100N256 B1T200N64 --modes fwd --rounds 3 2>&1 | grep -vi warn | tee "$OUTDIR/ab.txt"
  timeout 290 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py 2>&1 | tail -15 \
    | tee "$OUTDIR/frame_tests.txt"
  timeout 170 python3 bench/ops_frame.py --compile-max-t 20 --rounds 3 --modes fwd --shapes B10T10N256 B32T10N256 \
    --json "$OUTDIR/bench_frame.json" 2>&1 | grep -vi warn | tee "$OUTDIR/bench_frame.txt"
fi
if [ "$WHAT" = next ]; then  # about 8 minutes: readout tiles of 32 / 16 value columns (readout_bv) and K^T K spread
  # over the Gram's column programs (gram_kk_spread) off / on, then every frame GPU test with both on
  timeout 130 python3 bench/knob_ab.py --configs readout_bv=0 readout_bv=32 readout_bv=16 gram_kk_spread=1 \
    gram_kk_spread=1,readout_bv=32 --shapes B10T10N256 B32T10N256 B10T10N64 B1T100N256 B1T200N64 --modes fwd \
    --rounds 3 2>&1 | grep -vi warn | tee "$OUTDIR/ab.txt"
  GDKVM_FRAME_READOUT_BV=32 GDKVM_FRAME_GRAM_KK_SPREAD=1 timeout 300 python3 -m pytest -q -p no:cacheprovider -rf \
    --tb=short tests/ops/test_frame_gpu.py 2>&1 | tail -15 | tee "$OUTDIR/frame_tests.txt"
fi
if [ "$WHAT" = final7 ]; then  # about 8.5 minutes: every frame GPU test (the lean walk writing the final state), the
  # forward's host profile, the two short-of-target T10 forward rows of the issue table
  timeout 290 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py 2>&1 | tail -15 \
    | tee "$OUTDIR/frame_tests.txt"
  timeout 60 python3 bench/host_profile.py --shape B10T10N256 --mode fwd --calls 300 2>&1 | grep -vi warn \
    | tee "$OUTDIR/host.txt"
  timeout 150 python3 bench/ops_frame.py --compile-max-t 20 --rounds 3 --modes fwd --shapes B10T10N256 B32T10N256 \
    --json "$OUTDIR/bench_frame.json" 2>&1 | grep -vi warn | tee "$OUTDIR/bench_frame.txt"
fi
if [ "$WHAT" = beside ]; then  # about 5 minutes: the Gram beside the waiting walk (walk_overlap): a one-round smoke
  # A/B (a wrong counter would hang: short limit), its GPU test, the A/B at the three T10 shapes
  timeout 60 python3 bench/knob_ab.py --configs walk_overlap=0 walk_overlap=1 --shapes B10T10N256 --modes fwd \
    --rounds 1 2>&1 | grep -vi warn | tee "$OUTDIR/smoke.txt"
  timeout 100 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py -k beside 2>&1 \
    | tail -15 | tee "$OUTDIR/frame_tests.txt"
  timeout 120 python3 bench/knob_ab.py --configs walk_overlap=0 walk_overlap=1 walk_overlap=1,overlap_lookahead=1 \
    --shapes B10T10N256 B32T10N256 B10T10N64 --modes fwd --rounds 2 2>&1 | grep -vi warn | tee "$OUTDIR/ab.txt"
fi
if [ "$WHAT" = hostov ]; then  # about 2.5 minutes: where the overlapped forward's host time goes (cProfile), off / on
  for ov in 0 1; do
    GDKVM_FRAME_WALK_OVERLAP=$ov timeout 60 python3 bench/host_profile.py --shape B10T10N256 --mode fwd --calls 300 \
      2>&1 | grep -vi warn | tee "$OUTDIR/host_ov$ov.txt"
  done
  timeout 60 python3 bench/knob_ab.py --configs walk_overlap=0 walk_overlap=1 --shapes B10T10N256 --modes fwd \
    --rounds 2 2>&1 | grep -vi warn | tee "$OUTDIR/ab.txt"
fi
beside_ab() {  # walk_overlap 0 / 1 / 2: a one-round smoke A/B (a wrong counter would hang: short limit), the GPU test
  # of the work beside the walk, the A/B at three T10 shapes
  timeout 60 python3 bench/knob_ab.py --configs walk_overlap=0 walk_overlap=1 walk_overlap=2 --shapes B10T10N256 \
    --modes fwd --rounds 1 2>&1 | grep -vi warn | tee "$OUTDIR/smoke.txt"
  timeout 110 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py -k beside 2>&1 \
    | tail -15 | tee "$OUTDIR/beside_tests.txt"
  timeout 120 python3 bench/knob_ab.py --configs walk_overlap=0 walk_overlap=1 walk_overlap=2 \
    --shapes B10T10N256 B10T10N64 B32T10N256 --modes fwd --rounds 3 2>&1 | grep -vi warn | tee "$OUTDIR/ab.txt"
}
if [ "$WHAT" = beside2 ]; then  # about 5 minutes: beside_ab, then the host profile with walk_overlap 2
  beside_ab
  GDKVM_FRAME_WALK_OVERLAP=2 timeout 60 python3 bench/host_profile.py --shape B10T10N256 --mode fwd --calls 300 \
    2>&1 | grep -vi warn | head -14 | tee "$OUTDIR/host_ov2.txt"
fi
if [ "$WHAT" = beside3 ]; then  # about 9 minutes: beside_ab, then every frame GPU test with walk_overlap 2
  beside_ab
  GDKVM_FRAME_WALK_OVERLAP=2 timeout 300 python3 -m pytest -q -p no:cacheprovider -rf --tb=short \
    tests/ops/test_frame_gpu.py 2>&1 | tail -15 | tee "$OUTDIR/frame_tests.txt"
fi
if [ "$WHAT" = table15 ]; then  # about 8 minutes: the frame GPU tests named in bench/_ids.txt (the rest of a run cut
  # short; file made for the call, not kept), then the issue table's rows named in $SHAPES (default: the T10 ones)
  [ -s bench/_ids.txt ] && timeout 220 python3 -m pytest -q -p no:cacheprovider -rf --tb=short \
    $(cat bench/_ids.txt) 2>&1 | tail -15 | tee "$OUTDIR/frame_tests.txt"
  timeout 280 python3 bench/ops_frame.py --compile-max-t 20 --rounds 3 --shapes ${SHAPES:-B10T10N256 B32T10N256 \
    B10T10N64} --json "$OUTDIR/bench_frame.json" 2>&1 | grep -vi warn | tee "$OUTDIR/bench_frame.txt"
fi
if [ "$WHAT" = sweep15 ]; then  # about 6.5 minutes: knobs beside walk_overlap 2 (A/B, B10 T10 N256 forward), then the
  # issue table's rows named in $SHAPES (default: the two B10 T10 ones), forward and forward + backward
  timeout 110 python3 bench/knob_ab.py --configs walk_overlap=0 walk_overlap=2 overlap_lookahead=2 \
    overlap_lookahead=8 readout_cols=256 readout_stages=1 gram_stages=1 --shapes B10T10N256 --modes fwd --rounds 2 \
    2>&1 | grep -vi warn | tee "$OUTDIR/ab.txt"
  timeout 280 python3 bench/ops_frame.py --compile-max-t 20 --rounds 3 --shapes ${SHAPES:-B10T10N256 B10T10N64} \
    --json "$OUTDIR/bench_frame.json" 2>&1 | grep -vi warn | tee "$OUTDIR/bench_frame.txt"
fi
if [ "$WHAT" = fwd15 ]; then  # about 3 minutes: the issue table's forward rows named in $SHAPES (default: B10 T10)
  timeout 200 python3 bench/ops_frame.py --compile-max-t 20 --rounds 3 --modes fwd --shapes ${SHAPES:-B10T10N256 \
    B10T10N64} --json "$OUTDIR/bench_frame.json" 2>&1 | grep -vi warn | tee "$OUTDIR/bench_frame.txt"
fi
if [ "$WHAT" = verify16 ]; then  # about 5 minutes, then wide16's 3: every frame GPU test with the defaults
  timeout 320 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py 2>&1 | tail -15 \
    | tee "$OUTDIR/frame_tests.txt"
  WHAT=wide16
fi
if [ "$WHAT" = wide16 ]; then  # about 3 minutes (not run yet): at B32 T10 N256 the lean walk's 256 one-head walkers
  # leave no SM free, so the Gram cannot run beside them; slices of two heads (fast_wide_slices 2: 128 walkers) can
  timeout 60 python3 bench/knob_ab.py --configs walk_overlap=0 fast_wide_slices=2 --shapes B32T10N256 --modes fwd \
    --rounds 1 2>&1 | grep -vi warn | tee "$OUTDIR/smoke.txt"
  timeout 150 python3 bench/knob_ab.py --configs walk_overlap=0 walk_overlap=1 fast_wide_slices=2,walk_overlap=0 \
    fast_wide_slices=2 fast_wide_slices=2,walk_overlap=2 --shapes B32T10N256 B10T10N256 --modes fwd --rounds 3 \
    2>&1 | grep -vi warn | tee "$OUTDIR/ab.txt"
fi
if [ "$WHAT" = auto16 ]; then  # about 7 minutes: walk_overlap 3 (the readout beside the walk where its output adds at
  # most overlap_read_pct percent to the forward's peak): its GPU tests, the A/B against 1 and 2, the T10 forward rows
  timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py -k beside 2>&1 \
    | tail -15 | tee "$OUTDIR/frame_tests.txt"
  timeout 130 python3 bench/knob_ab.py --configs walk_overlap=1 walk_overlap=2 walk_overlap=3 --shapes B10T10N256 \
    B10T10N64 --modes fwd --rounds 3 2>&1 | grep -vi warn | tee "$OUTDIR/ab.txt"
  timeout 200 python3 bench/ops_frame.py --compile-max-t 20 --rounds 3 --modes fwd --shapes B10T10N256 B10T10N64 \
    --json "$OUTDIR/bench_frame.json" 2>&1 | grep -vi warn | tee "$OUTDIR/bench_frame.txt"
fi
if [ "$WHAT" = cores17 ]; then  # about 3 minutes: with the Gram beside it the walk takes ~121 instead of
  # ~54 us at B10 T10 N256 (sixteenth round); by ptxas (sm_90) a walker (4 warps, 255 registers, 96 KB shared) leaves
  # room for one Gram program (4 warps, 236 registers, 64 KB) on its SM. gram_stages 5 (160 KB shared) or an 8-warp
  # walker (255 registers: the whole register file) keep them apart; then the Gram has only the free SMs
  timeout 200 python3 bench/knob_ab.py --configs walk_overlap=0 walk_overlap=3 gram_stages=5 fast_warps=8 \
    gram_stages=5,walk_overlap=1 fast_warps=8,walk_overlap=1 --shapes B10T10N256 B10T10N64 --modes fwd --rounds 3 \
    2>&1 | grep -vi warn | tee "$OUTDIR/ab.txt"
  for cfg in "" "GDKVM_FRAME_WALK_OVERLAP=0"; do env $cfg timeout 40 python3 bench/profile_ops.py --rule frame \
    --modes fwd --shapes B10T10N256 --iters 20 2>&1 | grep -vi warn | tail -8 | tee -a "$OUTDIR/profile.txt"; done
  # the forward's host time (the B10 T10 N256 row was host-bound in the sixteenth round: 176 us against 116 of kernels)
  timeout 60 python3 bench/host_profile.py --shape B10T10N256 --mode fwd --calls 300 2>&1 | grep -vi warn | head -30 \
    | tee "$OUTDIR/host.txt"
fi
if [ "$WHAT" = tests18 ]; then  # about 8 minutes cold: every frame GPU test, one line per test
  timeout 560 python3 -m pytest -v -p no:cacheprovider -rf --tb=short tests/ops/test_frame_gpu.py 2>&1 \
    | grep -E "PASS|FAIL|ERROR|SKIP|passed|failed|Error|assert" | tail -120 | tee "$OUTDIR/frame_tests.txt" | tail -25
fi
if [ "$WHAT" = host18 ]; then  # about 7 minutes: the forward's host time and op time per call, this tree against the
  # one in _old/ (git archive OLD gdkvm bench | tar -x -C _old), alternating processes; then the T10 N256 issue rows
  for round in 1 2 3; do
    for tree in _old .; do
      [ -d "$tree/gdkvm" ] || continue
      echo "== $tree round $round" | tee -a "$OUTDIR/host.txt"
      timeout 60 python3 "$tree/bench/host_profile.py" --shape B10T10N256 --mode fwd --calls 400 2>&1 | grep -vi warn \
        | head -1 | tee -a "$OUTDIR/host.txt"
      timeout 60 python3 "$tree/bench/knob_ab.py" --configs walk_overlap=3 --shapes B10T10N256 B10T10N64 --modes fwd \
        --rounds 2 2>&1 | grep -E "^\| B" | tee -a "$OUTDIR/host.txt"
    done
  done
  timeout 300 python3 bench/ops_frame.py --compile-max-t 20 --rounds 3 --shapes B10T10N256 B32T10N256 \
    --json "$OUTDIR/bench_frame.json" 2>&1 | grep -vi warn | tee "$OUTDIR/bench_frame.txt" | tail -14
fi
if [ "$WHAT" = nap18 ]; then  # about 5 minutes: programs waiting beside the walk sleep between polls (spin_sleep ns)
  timeout 200 python3 bench/knob_ab.py --configs spin_sleep=0 spin_sleep=64 spin_sleep=256 spin_sleep=1024 \
    --shapes B10T10N256 B10T10N64 --modes fwd --rounds 3 2>&1 | grep -vi warn | tee "$OUTDIR/ab.txt"
  GDKVM_FRAME_SPIN_SLEEP=256 timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short \
    tests/ops/test_frame_gpu.py -k "beside or inference" 2>&1 | tail -8 | tee "$OUTDIR/frame_tests.txt"
fi
if [ "$WHAT" = chain19 ]; then  # about 5 minutes: issue 7's per-kernel gap to fla-core, and a one-product chain probe
  timeout 120 python3 bench/profile_ops.py --rule fla --shapes B4T10240H8K64V64 B8T4096H16K128V128 --iters 10 \
    2>&1 | grep -vi warn | tee "$OUTDIR/profile_fla.txt"
  timeout 120 python3 bench/profile_ops.py --rule token --shapes B4T10240H8K64V64 B8T4096H16K128V128 --iters 10 \
    2>&1 | grep -vi warn | tee "$OUTDIR/profile_ours.txt"
  timeout 240 python3 bench/chain_probe.py 2>&1 | grep -vi warn | tee "$OUTDIR/chain.txt"
fi
if [ "$WHAT" = const19 ]; then  # about 5 minutes: chain probe (its K, V constexpr twin: at e038df6 only); forward launches
  timeout 200 python3 bench/chain_probe.py --shapes B4T10240H8K64V64 B8T4096H16K128V128 B4T2560H8K64V64 2>&1 \
    | grep -vi warn | tee "$OUTDIR/chain.txt"
  timeout 150 python3 bench/ablate_token.py --variants +const --shapes B4T10240H8K64V64 B8T4096H16K128V128 \
    B4T2560H8K64V64 B1T25600H8K64V32 2>&1 | grep -vi warn | tee "$OUTDIR/const_high.txt"
  GDKVM_TOKEN_PRECISION=fast timeout 100 python3 bench/ablate_token.py --variants +const --shapes B4T10240H8K64V64 \
    B4T2560H8K64V64 2>&1 | grep -vi warn | tee "$OUTDIR/const_fast.txt"
fi
if [ "$WHAT" = tests19 ]; then  # about 8 minutes: token GPU tests with H, K, V constexpr; launches of _old/ and ./
  # _old/: git archive OLD gdkvm bench | tar -x -C _old (the tree before the change; delete it afterwards)
  timeout 330 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_chunk_gpu.py 2>&1 | tail -15 \
    | tee "$OUTDIR/token_tests.txt"
  for round in 1 2; do
    for tree in _old .; do
      [ -d "$tree/gdkvm" ] || continue
      echo "== $tree round $round" | tee -a "$OUTDIR/launches.txt"
      (cd "$tree" && timeout 90 python3 bench/profile_ops.py --rule token --modes fwdbwd --iters 10 \
        --shapes B4T10240H8K64V64 B8T4096H16K128V128) 2>&1 | grep -vi warn | tee -a "$OUTDIR/launches.txt"
    done
  done
fi
if [ "$WHAT" = table19 ]; then  # about 6 minutes: the token issue table (graph timer, both precisions) against fla-core
  timeout 480 python3 bench/ops_token.py --timer graph --variants high fast --fla-timeout 240 \
    --json "$OUTDIR/bench_token_graph.json" 2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench_token_graph.txt" | tail -40
  save_autotune "$OUTDIR"
fi
if [ "$WHAT" = bwd20 ]; then  # about 8 minutes: the prepass reverse pass on the GPU, then an ours-only graph sweep
  timeout 220 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_chunk_gpu.py -k "prepass or oracle" \
    2>&1 | tail -15 | tee "$OUTDIR/token_tests.txt"
  # last: fast mode's reverse passes at 4 warps (the old chain's 16-bit 4-warp pass faulted; a fault ends the sweep)
  timeout 300 python3 bench/ops_token.py --timer graph --no-fla --no-accuracy --variants high high+prepass high+sf3 \
    high+sb2 high+sb3 high+prepass+sb2 high+prepass+sb3 fast fast+prepass fast+prepass+sbwd4 \
    --json "$OUTDIR/sweep.json" 2>&1 | grep -vE '^\{' | tee "$OUTDIR/sweep.txt" | tail -40
fi
if [ "$WHAT" = step20 ]; then  # about 4 minutes: our chunk step with each of fla's differences, next to fla's own kernel
  timeout 240 python3 bench/step_probe.py 2>&1 | grep -vi warn | tee "$OUTDIR/step.txt"
fi
if [ "$WHAT" = fast20 ]; then  # about 5 minutes: fast mode's 16-bit kernels at 4 warps again (now H, K, V constexpr)
  # each in its own process: the 4-warp prep faulted at V 32 (sixth round), a fault ends a process
  for cfg in '{"prep":{"num_warps":4}}' '{"state_bwd":{"num_warps":4}}'; do
    for bwd in chain prepass; do
      echo "== $cfg $bwd" | tee -a "$OUTDIR/check.txt"
      GDKVM_TOKEN_CONFIG=$cfg GDKVM_TOKEN_BWD=$bwd timeout 70 python3 bench/ops_token.py --check --check-cases \
        B4T2560H8K64V64 B2T1000H4K64V64-h0 B1T2000H2K64V32-slowgate --check-precisions fast --check-timeout 30 2>&1 \
        | tee -a "$OUTDIR/check.txt" | grep -E "RESULT|BAD|e2e|CRASH|Error"
    done
  done
  timeout 150 python3 bench/ops_token.py --timer graph --no-fla --no-accuracy --shapes B4T2560H8K64V64 B4T10240H8K64V64 \
    B1T25600H8K64V32 --variants fast fast+prep4 fast+prepass+sbwd4 fast+prep4+prepass+sbwd4 \
    --json "$OUTDIR/fast.json" 2>&1 | grep -vE '^\{' | tee "$OUTDIR/fast.txt" | tail -30
fi
if [ "$WHAT" = rest20 ]; then  # about 8 minutes: bwd20's sweep at the other shapes, a process per variant, then step20
  for variant in high high+prepass high+prepass+sb2 high+prepass+sb3 high+sb2 fast fast+prepass+sbwd4 \
    fast+prepass+sbwd4+sb3; do
    echo "== $variant" | tee -a "$OUTDIR/rest.txt"
    timeout 90 python3 bench/ops_token.py --timer graph --no-fla --no-accuracy --variants "$variant" \
      --shapes B1T25600H8K64V32 B4T2560H8K128V128 B8T4096H16K128V128 2>&1 | grep -vE '^\{' \
      | grep -E '^\| B|Error|error' | tee -a "$OUTDIR/rest.txt"
  done
  timeout 200 python3 bench/step_probe.py 2>&1 | grep -vi warn | tee "$OUTDIR/step.txt"
fi
if [ "$WHAT" = auto20 ]; then  # about 8 minutes: the one-wave prepass default on the GPU, forward warps and stages
  timeout 200 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_chunk_gpu.py -k "prepass or oracle" \
    2>&1 | tail -15 | tee "$OUTDIR/token_tests.txt"
  for variant in high high+chain high+sf3 high+sf3+sw2 high+sw2 fast fast+chain fast+sf3 fast+pw4; do
    echo "== $variant" | tee -a "$OUTDIR/sweep.txt"
    timeout 45 python3 bench/ops_token.py --timer graph --no-fla --no-accuracy --variants "$variant" 2>&1 \
      | grep -vE '^\{' | grep -E '^\| B|Error|error' | tee -a "$OUTDIR/sweep.txt"
  done
fi
if [ "$WHAT" = final20 ]; then  # about 8 minutes: fast mode's GPU tests, then the token issue table against fla-core
  timeout 150 python3 -m pytest -q -p no:cacheprovider -rf --tb=short tests/ops/test_chunk_gpu.py -k fast 2>&1 \
    | tail -15 | tee "$OUTDIR/token_tests.txt"
  timeout 330 python3 bench/ops_token.py --timer graph --variants high fast --fla-timeout 200 \
    --json "$OUTDIR/bench_token_graph.json" 2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench_token_graph.txt" | tail -40
  save_autotune "$OUTDIR"
fi
if [ "$WHAT" = step21 ]; then  # about 7 minutes: why our split state pass takes 1.48 us per step against the probe's 0.72
  timeout 150 python3 bench/step_probe.py --shapes B4T10240H8K64V64 2>&1 | grep -vi warn | tee "$OUTDIR/step.txt"
  # fast mode with value-side decay (one illegal address in seven H200 runs, 2026-11-27, before the kernels changed)
  # and with key-side decay on a transposed k load (keyt), launch by launch against the chunk reference
  for decay in value keyt; do
    GDKVM_TOKEN_DECAY=$decay timeout 70 python3 bench/ops_token.py --check --check-cases B4T2560H8K64V64 \
      B2T1000H4K64V64-h0 B1T2000H2K64V32-slowgate --check-precisions fast --check-timeout 30 2>&1 \
      | tee -a "$OUTDIR/check.txt" | grep -E "RESULT|BAD|e2e|CRASH|Error"
  done
  for variant in fast fast+vdecay fast+kdect fast+kdect+split; do
    timeout 60 python3 bench/ops_token.py --timer graph --no-fla --variants "$variant" --shapes B4T2560H8K64V64 \
      B4T10240H8K64V64 B1T25600H8K64V32 2>&1 | grep -E '^\| B|Error' | tee -a "$OUTDIR/sweep.txt"
  done
fi
export PATH=$PATH:/usr/local/cuda/bin
if [ "$WHAT" = check22 ]; then  # about 7 minutes: is fast mode's value-side decay (now the default) memory-clean?
  san() {  # san LABEL ENV... : memcheck of one forward + backward per shape, the caching allocator off
    echo "== $1" >>"$OUTDIR/sanitize.txt"; local label=$1; shift
    env "$@" PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout 80 compute-sanitizer --tool memcheck --error-exitcode 99 \
      --print-limit 8 \
      python3 bench/once_token.py B1T300H2K64V32 B2T1000H4K64V64 2>&1 | grep -vi warn | tail -40 >>"$OUTDIR/sanitize.txt"
    echo "$label rc ${PIPESTATUS[0]}" | tee -a "$OUTDIR/sanitize.txt"
  }
  san fast-value GDKVM_TOKEN_PRECISION=fast
  san fast-key GDKVM_TOKEN_PRECISION=fast GDKVM_TOKEN_DECAY=key
  san fast-prep4 GDKVM_TOKEN_PRECISION=fast GDKVM_TOKEN_CONFIG='{"prep": {"num_warps": 4}}'
  grep -E "ERROR SUMMARY|rc |Invalid|of size" "$OUTDIR/sanitize.txt" | sort | uniq -c | head -30
  timeout 170 python3 -m pytest -q -p no:cacheprovider -rf --tb=line tests/ops/test_chunk_gpu.py 2>&1 \
    | tail -20 | tee "$OUTDIR/token_tests.txt"
fi
if [ "$WHAT" = prof22 ]; then  # about 5 minutes
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  for i in 1 2 3; do  # fresh processes: the 2026-11-27 fault came in the first variant of a process
    timeout 45 python3 bench/ops_token.py --timer graph --no-fla --no-accuracy --variants fast --shapes B4T2560H8K64V64 \
      B4T10240H8K64V64 B1T25600H8K64V32 2>&1 | grep -E '^\| B|Error' | tee -a "$OUTDIR/sweep.txt"
  done
  for impl in ours fla; do  # hardware counters of every kernel of one forward + backward
    GDKVM_TOKEN_PRECISION=fast timeout 100 "$NCU" --clock-control none --section SpeedOfLight --section Occupancy \
      --section LaunchStats --section WarpStateStats python3 bench/once_token.py B4T10240H8K64V64 --impl $impl \
      >"$OUTDIR/ncu_$impl.txt" 2>&1; echo "ncu $impl rc $?"
  done
fi
if [ "$WHAT" = table22 ]; then  # about 7 minutes
  GDKVM_TOKEN_CONFIG='{"prep": {"num_warps": 1}}' timeout 60 python3 bench/ops_token.py --check --check-cases \
    B2T1000H4K64V64-h0 B1T2000H2K64V32-slowgate --check-precisions fast --check-timeout 25 2>&1 \
    | tee -a "$OUTDIR/check.txt" | grep -E "RESULT|BAD|e2e|CRASH|Error"
  timeout 45 python3 bench/ops_token.py --timer graph --no-fla --no-accuracy --variants fast+prep1 --shapes \
    B4T2560H8K64V64 B4T10240H8K64V64 B1T25600H8K64V32 2>&1 | grep -E '^\| B|Error' | tee -a "$OUTDIR/sweep.txt"
  timeout 330 python3 bench/ops_token.py --timer graph --variants high fast --fla-timeout 200 \
    --json "$OUTDIR/bench_token_graph.json" 2>&1 | grep -vE '^\{' | tee "$OUTDIR/bench_token_graph.txt" | tail -40
fi
if [ "$WHAT" = prep23 ]; then  # about 8 minutes
  GDKVM_TOKEN_PREP=split GDKVM_TOKEN_PRECISION=fast PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout 80 compute-sanitizer \
    --tool memcheck --error-exitcode 99 --print-limit 8 python3 bench/once_token.py B1T300H2K64V32 B2T1000H4K64V64 \
    2>&1 | grep -vi warn | tail -20 | tee "$OUTDIR/sanitize.txt"
  for precision in fast high; do
    GDKVM_TOKEN_PREP=split timeout 70 python3 bench/ops_token.py --check --check-cases B4T2560H8K64V64 \
      B2T1000H4K64V64-h0 B1T2000H2K64V32-slowgate --check-precisions $precision --check-timeout 30 2>&1 \
      | tee -a "$OUTDIR/check.txt" | grep -E "RESULT|BAD|e2e|CRASH|Error"
  done
  GDKVM_TOKEN_PREP=split timeout 120 python3 -m pytest -q -p no:cacheprovider -rf --tb=line tests/ops/test_chunk_gpu.py \
    -k "oracle or fast" 2>&1 | tail -8 | tee "$OUTDIR/token_tests.txt"
  for variant in fast+psplit high+psplit fast; do
    timeout 60 python3 bench/ops_token.py --timer graph --no-fla --no-accuracy --variants "$variant" --shapes \
      B4T2560H8K64V64 B4T10240H8K64V64 B1T25600H8K64V32 2>&1 | grep -E '^\| B|Error' | tee -a "$OUTDIR/sweep.txt"
  done
  for variant in high+psplit high; do  # K 128 (bf16 inputs: chunk 64, so the split applies)
    timeout 60 python3 bench/ops_token.py --timer graph --no-fla --no-accuracy --variants "$variant" --shapes \
      B4T2560H8K128V128 B8T4096H16K128V128 2>&1 | grep -E '^\| B|Error' | tee -a "$OUTDIR/sweep.txt"
  done
  GDKVM_TOKEN_PREP=split GDKVM_TOKEN_PRECISION=fast timeout 60 "$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu | head -1)" \
    --clock-control none -k regex:"_gram_solve_kernel|_prep_kernel" --section SpeedOfLight --section Occupancy \
    --section LaunchStats python3 bench/once_token.py B4T10240H8K64V64 --forward-only >"$OUTDIR/ncu_prep.txt" 2>&1
fi
