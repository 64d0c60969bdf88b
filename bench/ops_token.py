"""Benchmark of the token rule: our chunkwise Triton op against fla-core's ``chunk_gated_delta_rule``.

Run on a CUDA machine from the repository root: ``python3 bench/ops_token.py`` (or ``python3 bench/ops.py --rule
token``). For each shape (bf16 q, k, v, beta; fp32 per-head log-decay g; L2-normalised q, k) it measures the median
time (``triton.testing.do_bench``, short warm-up and repetition windows) of the forward (inputs without grad) and of
forward + backward (fixed random dO, gradients of every input), the ns per token-head, and the HBM floor: bytes of
q, k, v, o, g, beta in bf16 at 3.0 TB/s (forward) plus dO and the five gradients (forward + backward).

Ours runs in one or more *variants* (``--variants``): a precision ("high": fp32 intermediates, the default; "fast":
bf16 ones) plus the switchable kernel paths ("serial": GDKVM_TOKEN_SEGMENTS=1, no segment-parallel scan of the
sequential passes, which is the default "auto"; "split": GDKVM_TOKEN_O=split, o from a parallel kernel), e.g.
``high`` (the op's defaults), ``high+serial``, ``high+split``.
fla-core (if importable; FLA_DISABLE_BACKEND_DISPATCH=1) runs in ONE subprocess for all shapes; a crash (fla 0.6.0
dies with an illegal memory access in its V=32 backward on triton 3.6) marks that measurement "crash" and a new
subprocess resumes with the rest. fla-core 0.6.0 refuses its backward on Hopper with triton >= 3.4, < 3.7.1 (a
module-level version flag in ``fla.ops.common.chunk_o`` guards ``chunk_bwd_dqkwg``, no environment switch); with
``--fla-unguard`` (default) the child sets that flag so fla's forward + backward can be *timed* as the DESIGN.md
anchors were (its gradients on that triton may be wrong; only its o is compared). Prints JSON rows and a markdown
table. Imports only torch, triton, the standard library and gdkvm.ops (and fla, optionally).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {  # name: (B, T, H, K, V)
    "B4T2560H8K64V64": (4, 2560, 8, 64, 64),
    "B4T10240H8K64V64": (4, 10240, 8, 64, 64),
    "B1T25600H8K64V32": (1, 25600, 8, 64, 32),
    "B4T2560H8K128V128": (4, 2560, 8, 128, 128),
    "B8T4096H16K128V128": (8, 4096, 16, 128, 128),
}
TARGETS = {64: 1.2, 128: 1.0}  # minimum speed-up over fla-core by key dimension
# fla-core 0.6.0 medians (ms, fwd / fwd+bwd) measured by the lead on one H100 80GB, torch 2.11, triton 3.6
# (docs DESIGN.md); the reference when fla cannot be timed in this run.
FLA_ANCHORS = {
    "B4T2560H8K64V64": (0.424, 2.01),
    "B4T10240H8K64V64": (0.527, 2.61),
    "B4T2560H8K128V128": (0.588, 2.15),
    "B8T4096H16K128V128": (1.03, 3.95),
}
HBM_BYTES_PER_S = 3.0e12
# Variant flag -> environment of our op. "high"/"fast" set the precision; the proven path has no other flag.
VARIANT_ENV = {
    "high": {"GDKVM_TOKEN_PRECISION": "high"},
    "fast": {"GDKVM_TOKEN_PRECISION": "fast"},
    "serial": {"GDKVM_TOKEN_SEGMENTS": "1"},
    "split": {"GDKVM_TOKEN_O": "split"},
    "folded": {"GDKVM_TOKEN_O": "folded"},
    "regs": {"GDKVM_TOKEN_SOLVE": "regs"},
    "scratch": {"GDKVM_TOKEN_SOLVE": "scratch"},
    "doubling": {"GDKVM_TOKEN_SOLVE": "doubling"},
    "prep4": {"GDKVM_TOKEN_CONFIG": {"prep": {"num_warps": 4}}},  # fast-mode prep at 4 warps: illegal address at V 32
    "bv32": {"GDKVM_TOKEN_CONFIG": {"state": {"BV": 32}, "state_bwd": {"BV": 32}}},  # half the state-pass programs
    "hilo0": {"GDKVM_TOKEN_HILO": "off"},  # q and k products of the state passes in TF32 (high mode)
    "sbwd4": {"GDKVM_TOKEN_CONFIG": {"state_bwd": {"num_warps": 4}}},  # fast mode's reverse pass at 4 warps
    "vdecay": {"GDKVM_TOKEN_DECAY": "value"},  # per-head decay on the value side in both precisions
    "seg2": {"GDKVM_TOKEN_SEGMENTS": "2"},  # two segments scanned in parallel, whatever the program count
    "prep8": {"GDKVM_TOKEN_CONFIG": {"prep": {"num_warps": 8}}},  # 8-warp prep (28 B spill against 48 at 4, K 64)
    "prep1": {"GDKVM_TOKEN_CONFIG": {"prep": {"num_warps": 1}}},  # one-warp prep (fla's Gram + solve kernel: 1 warp)
    "psplit": {"GDKVM_TOKEN_PREP": "split"},  # T from 16 x 16 blocks in a one-warp launch, then the prep with T loaded
    "ov2": {"GDKVM_TOKEN_OVERLAP": "2"},  # forward in 2 pieces, later preps on a side stream
    "ov4": {"GDKVM_TOKEN_OVERLAP": "4"},
    "ov8": {"GDKVM_TOKEN_OVERLAP": "8"},
    "sb2": {"GDKVM_TOKEN_CONFIG": {"state_bwd": {"num_stages": 2}}},  # pipelined reverse pass
    "sf3": {"GDKVM_TOKEN_CONFIG": {"state": {"num_stages": 3}}},  # deeper pipeline in the forward pass
    "kdecay": {"GDKVM_TOKEN_DECAY": "key"},  # per-head decay on the k and q tiles in both precisions
    "kdect": {"GDKVM_TOKEN_DECAY": "keyt"},  # the same, k loaded transposed in the forward pass (no register transpose)
    "hilo2": {"GDKVM_TOKEN_HILO": "both"},  # bf16 head + tail products in both state passes (high mode)
    "prepass": {"GDKVM_TOKEN_BWD": "prepass"},  # reverse pass with its dO terms in a parallel launch first
    "sb3": {"GDKVM_TOKEN_CONFIG": {"state_bwd": {"num_stages": 3}}},  # reverse pass pipelined 3 deep
    "chain": {"GDKVM_TOKEN_BWD": "chain"},  # the four-product reverse chain wherever it runs (default: auto)
    "sw2": {"GDKVM_TOKEN_CONFIG": {"state": {"num_warps": 2}}},  # forward pass at 2 warps (step probe: fp32 fastest)
    "pw4": {"GDKVM_TOKEN_CONFIG": {"state_bwd_pre": {"num_warps": 4}}},  # fast mode's prepass chain at 4 warps
    "pb1": {"GDKVM_TOKEN_CONFIG": {"state_bwd_pre": {"num_stages": 1}}},  # prepass chain unpipelined
}
DEFAULT_VARIANTS = ["high", "high+serial", "high+split"]


def variant_env(variant: str) -> dict[str, str]:
    """The environment of one '+'-joined variant; the flags' GDKVM_TOKEN_CONFIG objects are merged per kernel into
    the one set outside (if any)."""
    env = {"GDKVM_TOKEN_PRECISION": "high", "GDKVM_TOKEN_SEGMENTS": "auto", "GDKVM_TOKEN_O": "fused"}
    config: dict[str, dict[str, int]] = json.loads(os.environ.get("GDKVM_TOKEN_CONFIG") or "{}")  # the caller's first
    for flag in variant.split("+"):
        if flag not in VARIANT_ENV:
            raise SystemExit(f"unknown variant flag {flag!r} in {variant!r} (known: {', '.join(VARIANT_ENV)})")
        for name, value in VARIANT_ENV[flag].items():
            if name == "GDKVM_TOKEN_CONFIG":
                for kernel, fields in value.items():
                    config.setdefault(kernel, {}).update(fields)
            else:
                env[name] = value
    env["GDKVM_TOKEN_CONFIG"] = json.dumps(config)
    return env


def make_inputs(shape: tuple[int, int, int, int, int], seed: int = 0, device: str = "cuda") -> dict[str, torch.Tensor]:
    """bf16 q, k (L2-normalised), v, beta (sigmoid) and fp32 g (logsigmoid) on ``device``, FLA's benchmark regime."""
    batch, length, heads, key_dim, value_dim = shape
    gen = torch.Generator(device=device).manual_seed(seed)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, device=device, generator=gen)

    return {
        "q": F.normalize(randn(batch, length, heads, key_dim), dim=-1).bfloat16(),
        "k": F.normalize(randn(batch, length, heads, key_dim), dim=-1).bfloat16(),
        "v": randn(batch, length, heads, value_dim).bfloat16(),
        "g": F.logsigmoid(randn(batch, length, heads)),
        "beta": torch.sigmoid(randn(batch, length, heads)).bfloat16(),
    }


def floors_us(shape: tuple[int, int, int, int, int]) -> tuple[float, float]:
    """HBM floors (us) at 3 TB/s, everything in bf16: forward reads q, k, v, g, beta and writes o; the backward reads
    q, k, v, g, beta, dO and writes dq, dk, dv, dg, dbeta."""
    batch, length, heads, key_dim, value_dim = shape
    token_heads = batch * length * heads
    fwd = token_heads * 2 * (2 * key_dim + 2 * value_dim + 2)
    bwd = token_heads * 2 * (4 * key_dim + 3 * value_dim + 4)
    return fwd / HBM_BYTES_PER_S * 1e6, (fwd + bwd) / HBM_BYTES_PER_S * 1e6


def time_case(fn, inputs: dict[str, torch.Tensor], mode: str, warmup: int, rep: int) -> float:
    """Median ms of ``fn(**inputs)`` (mode "fwd") or of it plus the gradients of every input (mode "fwdbwd", taken
    with ``torch.autograd.grad``, so nothing accumulates across repetitions). ``GDKVM_BENCH_TIMER=graph``
    (``--timer graph``; the fla-core child inherits it) replays the call from a CUDA graph instead
    (``do_bench_cudagraph``): GPU time without the host's launch overhead, warm L2, for comparing kernels when host
    time dominates."""
    import triton.testing

    args = {n: t.detach().clone().requires_grad_(mode == "fwdbwd") for n, t in inputs.items()}
    if mode == "fwd":

        def call() -> None:
            with torch.no_grad():
                fn(**args)
    else:
        d_out = torch.randn_like(fn(**args)[0])

        def call() -> None:
            torch.autograd.grad(fn(**args)[0], list(args.values()), d_out)

    for _ in range(2):  # compile and autotune outside the timed region (and before a graph capture)
        call()
    torch.cuda.synchronize()
    if os.environ.get("GDKVM_BENCH_TIMER", "eager") == "graph":
        return float(triton.testing.do_bench_cudagraph(call, rep=rep, return_mode="median"))
    return float(triton.testing.do_bench(call, warmup=warmup, rep=rep))


def ours(**kw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    from gdkvm.ops import chunk_gated_delta

    return chunk_gated_delta(kw["q"], kw["k"], kw["v"], kw["g"], kw["beta"])


def fla_op(unguard: bool):
    """fla-core 0.6.0's ``chunk_gated_delta_rule`` called like ``ours`` (needs fla-core); ``unguard`` lifts its
    refusal of the backward on triton 3.6 (#640), for timing only."""
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    if unguard:
        import fla.ops.common.chunk_o as fla_chunk_o

        fla_chunk_o.TRITON_ABOVE_3_7_1 = True

    def fla(**kw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return chunk_gated_delta_rule(kw["q"], kw["k"], kw["v"], g=kw["g"], beta=kw["beta"])

    return fla


def fla_child(tasks: list[str], out_dir: str, warmup: int, rep: int, unguard: bool) -> None:
    """Subprocess body: times fla-core on "shape:mode" tasks in order, one JSON line per event (start, result), and
    saves each shape's o (fwd tasks) for comparison."""
    fla = fla_op(unguard)
    for task in tasks:
        name, mode = task.split(":")
        print(json.dumps({"start": task}), flush=True)
        inputs = make_inputs(SHAPES[name])
        if mode == "fwd":
            with torch.no_grad():
                torch.save(fla(**inputs)[0].cpu(), str(Path(out_dir) / f"{name}.pt"))
        try:
            ms: object = time_case(fla, inputs, mode, warmup, rep)
        except RuntimeError as err:  # fla's guard (without --fla-unguard) raises here
            ms = f"error: {str(err).splitlines()[0][:60]}"
            if "CUDA" in str(err):
                raise
        print(json.dumps({"task": task, "ms": ms}), flush=True)
        del inputs
        torch.cuda.empty_cache()


def child_env(**extra: str) -> dict[str, str]:
    """Environment of a child interpreter that sees every module this one sees: PYTHONPATH rebuilt from sys.path
    (bench/gpu_env.sh installs fla-core into /tmp/site, which the parent may have on sys.path only)."""
    paths = [str(ROOT)] + [p for p in sys.path if p and Path(p).exists()]
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)), **extra)


def run_fla(names: list[str], out_dir: str, args: argparse.Namespace) -> dict[str, object]:
    """All fla measurements ("shape:mode" -> ms, "crash", "timeout" or an error string), forwards first, in as few
    subprocesses as crashes allow."""
    tasks = [f"{n}:fwd" for n in names] + [f"{n}:fwdbwd" for n in names]
    results: dict[str, object] = {}
    env = child_env(FLA_DISABLE_BACKEND_DISPATCH="1")
    while tasks:
        cmd = [sys.executable, __file__, "--fla-child", out_dir, "--warmup", str(args.warmup), "--rep", str(args.rep),
               *(["--fla-unguard"] if args.fla_unguard else []), "--tasks", *tasks]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.fla_timeout)
            stdout, code, err = proc.stdout, proc.returncode, proc.stderr
        except subprocess.TimeoutExpired as exc:
            stdout, code, err = exc.stdout or "", "timeout", ""
            stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
        started = None
        for line in stdout.splitlines():
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if "start" in event:
                started = event["start"]
            else:
                results[event["task"]] = event["ms"]
                started = None
        if code != 0:
            tail = (err.strip().splitlines() or ["?"])[-1]
            print(f"  fla child exit {code} during {started}: {tail[:160]}", flush=True)
        if started is not None:
            results[started] = "timeout" if code == "timeout" else "crash"
        remaining = [t for t in tasks if t not in results]
        if remaining == tasks:  # no progress (import failure): give up
            for t in tasks:
                results[t] = "unavailable"
            break
        tasks = remaining
    return results


def fla_available() -> bool:
    try:
        import fla  # noqa: F401
    except Exception:  # noqa: BLE001 -- any import failure means "not available"
        return False
    return True


def rel_rms(ref: torch.Tensor, got: torch.Tensor) -> float:
    ref, got = ref.double(), got.double()
    return ((ref - got).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def reference_o(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """fp32 token-loop output on the same (bf16-rounded) inputs, for the accuracy columns."""
    from gdkvm.ops.gated_delta import naive_recurrent_gated_delta

    with torch.no_grad():
        x = {n: t.float() for n, t in inputs.items()}
        return naive_recurrent_gated_delta(x["q"], x["k"], x["v"], x["g"], x["beta"])[0]


def with_env(env: dict[str, str], fn, *a, **kw):
    """Calls ``fn`` with os.environ updated by ``env`` (restored afterwards)."""
    previous = {n: os.environ.get(n) for n in env}
    os.environ.update(env)
    try:
        return fn(*a, **kw)
    finally:
        for n, v in previous.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def time_ours(name: str, inputs: dict[str, torch.Tensor], args: argparse.Namespace, variant: str) -> dict:
    """Our op in one variant: fwd and fwd+bwd medians, o (for the accuracy column) and optionally per-launch times."""
    batch, length, heads = SHAPES[name][:3]

    def measure() -> dict[str, object]:
        row: dict[str, object] = {"shape": name, "variant": variant}
        t0 = time.time()
        row["ours_fwd_ms"] = time_case(ours, inputs, "fwd", args.warmup, args.rep)
        row["ours_fwdbwd_ms"] = time_case(ours, inputs, "fwdbwd", args.warmup, args.rep)
        with torch.no_grad():
            row["o"] = ours(**inputs)[0]
        if args.launches:
            row.update(time_launches(inputs, 2, max(5, args.rep // 2)))
        row["wall_s"] = round(time.time() - t0, 1)
        return row

    row = with_env(variant_env(variant), measure)
    for mode in ("fwd", "fwdbwd"):
        row[f"ours_{mode}_ns_th"] = row[f"ours_{mode}_ms"] * 1e6 / (batch * length * heads)
    return row


def time_launches(inputs: dict[str, torch.Tensor], warmup: int, rep: int) -> dict[str, float]:
    """Median ms of each launch alone (prep, state forward without and with the saved tensors, state backward, chunk
    backward), to see where the time goes."""
    import triton.testing

    from gdkvm.ops.gated_delta.chunk_bwd import launch_chunk_bwd, launch_state_bwd
    from gdkvm.ops.gated_delta.chunk_fwd import launch_prep, launch_state_fwd
    from gdkvm.ops.gated_delta.gates import chunk_local_cumsum

    q, k, v, beta = (inputs[n] for n in ("q", "k", "v", "beta"))
    scale, value_dim, chunk = q.shape[-1] ** -0.5, v.shape[-1], 64 if q.shape[-1] <= 128 else 32
    gc = chunk_local_cumsum(inputs["g"], chunk)
    do = torch.randn_like(v)
    prep = launch_prep(q, k, v, gc, beta, scale, chunk)
    saved = {**prep, **launch_state_fwd(q, k, gc, prep, value_dim, scale, None, False, True, chunk)}
    grads = launch_state_bwd(q, k, gc, saved, value_dim, scale, do, None, False, chunk)
    calls = {
        "k_prep_ms": lambda: launch_prep(q, k, v, gc, beta, scale, chunk),
        "k_state_fwd_ms": lambda: launch_state_fwd(q, k, gc, prep, value_dim, scale, None, False, False, chunk),
        "k_state_fwd_save_ms": lambda: launch_state_fwd(q, k, gc, prep, value_dim, scale, None, False, True, chunk),
        "k_state_bwd_ms": lambda: launch_state_bwd(q, k, gc, saved, value_dim, scale, do, None, False, chunk),
        "k_chunk_bwd_ms": lambda: launch_chunk_bwd(saved, grads, q, k, v, gc, beta, scale, do, chunk),
    }
    out = {}
    for name, call in calls.items():
        call()
        out[name] = float(triton.testing.do_bench(call, warmup=warmup, rep=rep))
    return out


def bench_shape(name: str, args: argparse.Namespace, fla_res: dict[str, object], o_fla) -> list[dict[str, object]]:
    """Rows for one shape: ours in every variant, against fla-core (if timed) and the DESIGN.md anchors."""
    inputs = make_inputs(SHAPES[name])
    rows = []
    for variant in args.variants:
        try:
            rows.append(time_ours(name, inputs, args, variant))
        except Exception as err:  # noqa: BLE001  (a launch that cannot run here: report it, time the rest)
            first = (str(err).strip().splitlines() or [""])[0][:160]
            if "CUDA" in str(err) or "illegal" in str(err):
                raise  # the CUDA context is gone: nothing after this can run in this process
            print(f"{name} {variant}: skipped, {type(err).__name__}: {first}", flush=True)
    o_ref = None if args.no_accuracy else reference_o(inputs)
    floors = floors_us(SHAPES[name])
    for row in rows:
        o = row.pop("o")
        row["floor_fwd_us"], row["floor_fwdbwd_us"] = floors
        if o_ref is not None:
            row["o_rel_rms_vs_fp32"] = rel_rms(o_ref, o)
            if o_fla is not None:
                row["o_rel_rms_fla_vs_fp32"] = rel_rms(o_ref, o_fla.cuda())
        target = TARGETS.get(SHAPES[name][3])
        row["target"] = target
        for mode, anchor in zip(("fwd", "fwdbwd"), FLA_ANCHORS.get(name, (None, None))):
            theirs = fla_res.get(f"{name}:{mode}")
            if theirs is not None:
                row[f"fla_{mode}_ms"] = theirs
            if isinstance(theirs, float):
                row[f"speedup_{mode}"], row[f"vs_{mode}"] = theirs / row[f"ours_{mode}_ms"], "fla"
            elif anchor is not None:
                row[f"speedup_{mode}"], row[f"vs_{mode}"] = anchor / row[f"ours_{mode}_ms"], "anchor"
            if anchor is not None:
                row[f"speedup_{mode}_vs_anchor"] = anchor / row[f"ours_{mode}_ms"]
            ok = row.get(f"speedup_{mode}")
            row[f"pass_{mode}"] = None if ok is None or target is None else bool(ok >= target)
    del inputs
    torch.cuda.empty_cache()
    return rows


def fmt(x: object, spec: str = ".3f") -> str:
    return format(x, spec) if isinstance(x, float) else ("-" if x is None else str(x))


def print_table(rows: list[dict[str, object]]) -> None:
    """Markdown table: ms, ns per token-head, speed-up over fla-core (or over the DESIGN.md anchor, marked "a"),
    HBM floors and pass/fail against the target."""
    head = ("shape", "variant", "ours fwd ms", "fla fwd ms", "x fwd", "ours f+b ms", "fla f+b ms", "x f+b",
            "ns/th fwd", "ns/th f+b", "floor fwd/f+b us", "target", "pass fwd/f+b", "o err ours/fla")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))

    def speed(r: dict, mode: str) -> str:
        x = r.get(f"speedup_{mode}")
        return "-" if x is None else f"{x:.2f}{'a' if r.get(f'vs_{mode}') == 'anchor' else ''}"

    def verdict(r: dict, mode: str) -> str:
        return {True: "PASS", False: "FAIL", None: "-"}[r.get(f"pass_{mode}")]

    for r in rows:
        cells = [
            str(r["shape"]), str(r["variant"]), fmt(r["ours_fwd_ms"]), fmt(r.get("fla_fwd_ms")), speed(r, "fwd"),
            fmt(r["ours_fwdbwd_ms"]), fmt(r.get("fla_fwdbwd_ms")), speed(r, "fwdbwd"),
            fmt(r["ours_fwd_ns_th"], ".2f"), fmt(r["ours_fwdbwd_ns_th"], ".2f"),
            f"{r['floor_fwd_us']:.0f}/{r['floor_fwdbwd_us']:.0f}", fmt(r.get("target"), ".1f"),
            f"{verdict(r, 'fwd')}/{verdict(r, 'fwdbwd')}",
            f"{fmt(r.get('o_rel_rms_vs_fp32'), '.1e')}/{fmt(r.get('o_rel_rms_fla_vs_fp32'), '.1e')}",
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |", flush=True)
    print("x: fla time / ours on this card; 'a': fla not timed here, against the DESIGN.md anchor (same card model).")


def print_launches(rows: list[dict[str, object]]) -> None:
    keys = ("k_prep_ms", "k_state_fwd_ms", "k_state_fwd_save_ms", "k_state_bwd_ms", "k_chunk_bwd_ms")
    if not any(key in r for r in rows for key in keys):
        return
    print("| shape | variant | prep | state_fwd | state_fwd+save | state_bwd | chunk_bwd | (ms per launch) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join([str(r["shape"]), str(r["variant"])] + [fmt(r.get(key)) for key in keys]) + " | |")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ops_token_check import CHECK_CASES

    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS,
                        help="'+'-joined flags high|fast, serial, split (default: %(default)s)")  # fmt: skip
    parser.add_argument("--no-fla", action="store_true", help="skip fla-core even if it is installed")
    parser.add_argument("--fla-unguard", action=argparse.BooleanOptionalAction, default=True,
                        help="lift fla's triton-version refusal of its backward so it can be timed")  # fmt: skip
    parser.add_argument("--fla-timeout", type=int, default=240, help="seconds per fla subprocess")
    parser.add_argument("--warmup", type=int, default=5, help="do_bench warm-up (ms)")
    parser.add_argument("--rep", type=int, default=20, help="do_bench repetitions (ms)")
    parser.add_argument("--launches", action=argparse.BooleanOptionalAction, default=True,
                        help="also time each launch alone")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the fp32 token-loop reference")
    parser.add_argument("--timer", choices=["eager", "graph"], default="eager",
                        help="eager launches (default) or CUDA-graph replays (GPU time only), both sides")  # fmt: skip
    parser.add_argument("--check", action="store_true", help="per-launch self-check against the torch reference")
    parser.add_argument("--check-cases", nargs="*", default=[c for c in CHECK_CASES if c != "tiny-cpu"])
    parser.add_argument("--check-precisions", nargs="*", default=["high", "fast"], choices=["high", "fast"])
    parser.add_argument("--check-autotune", action="store_true", help="autotune in --check (default: heuristic)")
    parser.add_argument("--check-timeout", type=int, default=240, help="seconds per --check case")


def run(args: argparse.Namespace) -> list[dict[str, object]]:
    """Benchmarks every requested shape; returns one dict per (shape, variant)."""
    if not torch.cuda.is_available():
        print("token rule: no CUDA device, nothing to time", flush=True)
        return []
    for key, default in (("variants", DEFAULT_VARIANTS), ("warmup", 5), ("rep", 20), ("launches", True),
                         ("no_accuracy", False), ("fla_unguard", True), ("fla_timeout", 240)):  # fmt: skip
        if not hasattr(args, key):
            setattr(args, key, default)
    for variant in args.variants:
        variant_env(variant)  # fail early on a typo
    with_fla = not getattr(args, "no_fla", False) and fla_available()
    import triton

    timer = getattr(args, "timer", "eager")
    os.environ["GDKVM_BENCH_TIMER"] = timer  # read by time_case here and in the fla-core child
    t0 = time.time()
    print(f"token rule on {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, "
          f"fla-core {'yes' if with_fla else 'not available'}, timer {timer}", flush=True)  # fmt: skip
    names = list(getattr(args, "shapes", list(SHAPES)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fla_res = run_fla(names, tmp, args) if with_fla else {}
        if with_fla:
            print(f"fla-core done in {time.time() - t0:.0f} s: {json.dumps(fla_res)}", flush=True)
        try:
            for name in names:
                path = Path(tmp) / f"{name}.pt"
                o_fla = torch.load(path) if path.exists() else None
                for row in bench_shape(name, args, fla_res, o_fla):
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:  # a CUDA fault ends the run: the rows measured before it are still printed and saved
            print_table(rows)
            print_launches(rows)
            print(f"bench wall time {time.time() - t0:.0f} s", flush=True)
            if getattr(args, "json", None):
                Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--fla-child"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("--fla-child")
        parser.add_argument("--warmup", type=int, default=5)
        parser.add_argument("--rep", type=int, default=20)
        parser.add_argument("--fla-unguard", action="store_true")
        parser.add_argument("--tasks", nargs="*", default=[])
        child = parser.parse_args(argv)
        fla_child(child.tasks, child.fla_child, child.warmup, child.rep, child.fla_unguard)
        return []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.check:
        from ops_token_check import run_check

        if run_check(args):
            raise SystemExit(1)
        return []
    return run(args)


if __name__ == "__main__":
    main()
