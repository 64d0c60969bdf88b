"""Benchmark of the frame rule: the paper's eager einsum loop, torch.compile of it, and our Triton op.

Run on a CUDA machine: ``python3 bench/ops_frame.py`` (or through ``bench/ops.py``). For each shape it measures the
median time (``triton.testing.do_bench``) of the forward (under ``torch.no_grad``) and of forward + backward (a fixed
random dO, gradients of every input; ``--rounds`` rounds of eager, compiled and ours in turn, each column the median
of its rounds, as the host's speed drifts within a run), the peak extra memory of one call, the speed-ups of ours,
and the HBM floor:
bytes of K, V and O in fp32 (plus dO, dK, dV for the backward) at 3.0 TB/s. Forward rows also show ours replayed as
a CUDA graph (kernels only) and the host time of one call. Imports only torch, triton and gdkvm.ops.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gdkvm.ops import frame_gated_delta, frame_gated_delta_step  # noqa: E402
from gdkvm.ops.frame.triton_fwd import TUNING  # noqa: E402

SHAPES = {  # name: (B, T, N); Dk, Dv, H are the paper's 64, 256, 8
    "B10T10N256": (10, 10, 256),
    "B10T10N64": (10, 10, 64),
    "B1T100N256": (1, 100, 256),
    "B1T200N64": (1, 200, 64),
    "B32T10N256": (32, 10, 256),
}
DK, DV, HEADS = 64, 256, 8
HBM_BYTES_PER_S = 3.0e12
TARGETS = {"fwd": (20.0, 10.0), "fwdbwd": (10.0, 4.0)}  # minimum speed-up over (eager, compiled)


def paper_frame(
    state: torch.Tensor | None,
    kt: torch.Tensor,
    vt: torch.Tensor,
    w_beta: torch.Tensor,
    w_alpha: torch.Tensor,
    a_log: torch.Tensor,
    dt_bias: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame as the authors' code writes it (einsums and elementwise ops, ~12 launches), with the two fixes.

    Args:
        state: [B, Dk, Dv] or None; kt: [B, N, Dk]; vt: [B, N, Dv]; w_beta, w_alpha: [Dv, H]; a_log, dt_bias: [H].

    Returns:
        o_t [B, N, Dv] and the new state [B, Dk, Dv].
    """
    if state is None:
        state = torch.einsum("bnk,bnv->bkv", kt, vt)
    else:
        head_dim = vt.shape[-1] // w_beta.shape[-1]
        beta = torch.sigmoid(torch.einsum("bkv,vh->bkh", state, w_beta)).repeat_interleave(head_dim, dim=-1)
        gram = torch.einsum("bnk,bnj->bkj", kt, kt)
        eraser = beta * torch.einsum("bkj,bjv->bkv", gram, state)
        new = beta * torch.einsum("bnk,bnv->bkv", kt, vt)
        g = -torch.exp(a_log) * F.softplus(torch.einsum("bkv,vh->bkh", state, w_alpha) + dt_bias)
        alpha = torch.exp(g).repeat_interleave(head_dim, dim=-1)
        state = alpha * (state - eraser) + new
    return torch.einsum("bnk,bkv->bnv", kt, state), state


def paper_loop(
    k: torch.Tensor, v: torch.Tensor, *params: torch.Tensor, frame_fn: Callable = paper_frame
) -> tuple[torch.Tensor, torch.Tensor]:
    """The eager loop over frames. k: [B, T, N, Dk], v: [B, T, N, Dv]; returns o [B, T, N, Dv] and the last state."""
    state, outs = None, []
    for t in range(k.shape[1]):
        o_t, state = frame_fn(state, k[:, t], v[:, t], *params)
        outs.append(o_t)
    return torch.stack(outs, dim=1), state


def ours(k: torch.Tensor, v: torch.Tensor, *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return frame_gated_delta(k, v, *params, heads=HEADS, output_final_state=True, backend="triton")


def make_inputs(b: int, t: int, n: int, dtype: torch.dtype) -> list[torch.Tensor]:
    dev = torch.device("cuda")
    return [
        torch.softmax(torch.randn(b, t, n, DK, device=dev), dim=-1).to(dtype),
        torch.randn(b, t, n, DV, device=dev).to(dtype),
        torch.randn(DV, HEADS, device=dev) / DV**0.5,
        torch.randn(DV, HEADS, device=dev) / DV**0.5,
        torch.zeros(HEADS, device=dev),
        torch.zeros(HEADS, device=dev),
    ]


_COMPILED: dict[str, Callable] = {}


def compiled_impl(t: int, max_loop_t: int) -> tuple[Callable, str]:
    """torch.compile of the whole unrolled loop for short clips, of the per-frame function for long ones.

    Compiled once per kind with dynamic shapes (B and N vary between rows; T is unrolled), to keep compile time low.
    """
    kind = "loop" if t <= max_loop_t else "frame"
    if kind not in _COMPILED:
        if kind == "loop":
            _COMPILED[kind] = torch.compile(paper_loop, dynamic=True)
        else:
            step = torch.compile(paper_frame, dynamic=True)

            def frame_fn(state: torch.Tensor | None, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                # The compiled step sees one state layout: a fresh tensor with canonical strides (a copy of
                # [B, Dk, Dv] per frame). The first frame's einsum and the later frames give states of different
                # strides (and views), each new pattern recompiled the step until dynamo's recompile limit (8) sent
                # the rest of the clip to eager (H200, 2026-11-27: "compiled" slower than eager at T100).
                if state is not None:
                    state = torch.empty(state.shape, device=state.device, dtype=state.dtype).copy_(state)
                return step(state, *args)

            _COMPILED[kind] = lambda k, v, *p: paper_loop(k, v, *p, frame_fn=frame_fn)
    return _COMPILED[kind], kind


def op_call(
    fn: Callable, inputs: list[torch.Tensor], mode: str, clear_grads: bool = False
) -> tuple[Callable[[], None], list[torch.Tensor]]:
    """(call, leaves): one call of fn on detached copies of inputs in mode "fwd" (no grad) or "fwdbwd" (forward, then
    the backward of a fixed random output gradient; with clear_grads the leaves' grads are dropped after it)."""
    leaves = [x.detach().requires_grad_(mode == "fwdbwd") for x in inputs]
    do = torch.randn_like(leaves[1])

    def call() -> None:
        if mode == "fwd":
            with torch.no_grad():
                fn(*leaves)
            return
        fn(*leaves)[0].backward(do)
        if clear_grads:
            for x in leaves:
                x.grad = None

    return call, leaves


def measure(fn: Callable, inputs: list[torch.Tensor], mode: str, warmup: int, rep: int) -> tuple[float, float]:
    """Median ms and peak extra MiB of one call of fn in mode "fwd" (no grad) or "fwdbwd"."""
    import triton.testing

    call, leaves = op_call(fn, inputs, mode)
    for _ in range(3):  # compile, autotune, warm the allocator
        call()
    for x in leaves:
        x.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    call()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    ms = triton.testing.do_bench(call, warmup=warmup, rep=rep, grad_to_none=leaves, return_mode="median")
    return float(ms), float(peak)


def launch_overhead(inputs: list[torch.Tensor], warmup: int, rep: int) -> dict[str, float]:
    """Where the forward's time goes: the same no-grad call replayed as a CUDA graph (kernels only, no Python or
    launch cost) and the host time to enqueue one call (validation, allocation, three Triton launches)."""
    import time

    import triton.testing

    with torch.no_grad():
        for _ in range(3):
            ours(*inputs)
        torch.cuda.synchronize()
        graph_ms = float("nan")
        for capture in (1, 0):  # the one-launch forward captured (a cooperative launch in a graph), else without it
            TUNING["fused_capture"] = capture
            try:
                # another knob value, another launch plan: its first call runs cold (compiles, no overlap)
                ours(*inputs)
                torch.cuda.synchronize()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    ours(*inputs)
                graph_ms = triton.testing.do_bench(graph.replay, warmup=warmup, rep=rep, return_mode="median")
                break
            except RuntimeError as err:
                print(f"graph capture with fused_capture={capture} failed: {err!r:.300}", flush=True)
                torch.cuda.synchronize()
            finally:
                TUNING["fused_capture"] = 0
        torch.cuda.synchronize()
        host = []
        for _ in range(50):
            t0 = time.perf_counter()
            ours(*inputs)
            host.append(time.perf_counter() - t0)
            torch.cuda.synchronize()
    return {"ours_graph_ms": float(graph_ms), "ours_host_us": sorted(host)[len(host) // 2] * 1e6}


def _params_as_input(fn: Callable) -> Callable:
    return lambda k, v, *params: fn(k, v, *[p.to(k.dtype) for p in params])


def floor_us(b: int, t: int, n: int, mode: str) -> float:
    kvo = b * t * n * (DK + 2 * DV) * 4
    total = kvo if mode == "fwd" else 2 * kvo + b * t * n * (DK + DV) * 4  # + dO, dK, dV and K, V read again
    return total / HBM_BYTES_PER_S * 1e6


def rel_rms(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.double() - ref.double()).pow(2).mean().sqrt() / ref.double().pow(2).mean().sqrt())


def bench_shape(name: str, args: argparse.Namespace) -> list[dict]:
    b, t, n = SHAPES[name]
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    inputs = make_inputs(b, t, n, dtype)
    with torch.no_grad():
        err = rel_rms(ours(*inputs)[0], paper_loop(*[x.float() for x in inputs])[0])
    impls = {"eager": (paper_loop, "")}
    if not args.no_compile:
        impls["compiled"] = compiled_impl(t, args.compile_max_t)
    if dtype != torch.float32:  # the einsum loop needs one dtype: run it with bf16 parameters too
        impls = {name: (_params_as_input(fn), how) for name, (fn, how) in impls.items()}
    impls["ours"] = (ours, "")
    rows = []
    for mode in args.modes:
        row = {"shape": f"{name}Dk{DK}Dv{DV}H{HEADS}", "dtype": args.dtype, "mode": mode, "rel_err_vs_eager": err}
        times = {impl: [] for impl in impls}
        for _ in range(args.rounds):  # interleaved: a host that slows down mid-run slows every column alike
            for impl, (fn, how) in impls.items():
                ms, row[f"{impl}_peak_mib"] = measure(fn, inputs, mode, args.warmup, args.rep)
                times[impl].append(ms)
                if how:
                    row["compiled_what"] = how
        for impl, got in times.items():
            row[f"{impl}_ms"] = statistics.median(got)
            row[f"{impl}_ms_rounds"] = got
        row["ours_span"] = f"{min(times['ours']):.3f}-{max(times['ours']):.3f}"
        if mode == "fwd":
            try:
                row.update(launch_overhead(inputs, args.warmup, args.rep))
            except Exception as exc:  # noqa: BLE001  (a diagnostic column, never fatal)
                print(f"launch overhead of {name} not measured: {exc!r:.200}", flush=True)
        row["floor_us"] = floor_us(b, t, n, mode)
        row["x_eager"] = row["eager_ms"] / row["ours_ms"]
        need_e, need_c = TARGETS[mode]
        ok = row["x_eager"] >= need_e and row["ours_peak_mib"] <= row["eager_peak_mib"]
        if "compiled_ms" in row:
            row["x_compiled"] = row["compiled_ms"] / row["ours_ms"]
            ok = ok and row["x_compiled"] >= need_c
        row["meets_targets"] = ok
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> list[dict]:
    """Benchmark every shape in args.shapes; one dict per (shape, mode)."""
    if not torch.cuda.is_available():
        raise SystemExit("bench/ops_frame.py needs a CUDA device")
    rows = []
    for name in args.shapes:
        rows += bench_shape(name, args)
        print(format_table(rows[-len(args.modes) :], header=not rows[: -len(args.modes)]), flush=True)
    return rows


SWEEP = {  # knob -> values tried, one knob at a time, the others at their defaults
    "fwd": [
        ("fused_fwd", (0, 1)),
        (
            "fused_combo",
            (
                {"fused_fwd": 1, "fused_per_sm": 2},
                {"fused_fwd": 1, "fused_per_sm": 2, "gram_heads": 2},
                {"fused_fwd": 1, "fused_per_sm": 2, "gram_heads": 2, "fused_read_cols": 256},
                {"fused_fwd": 1, "fused_per_sm": 2, "gram_heads": 2, "fused_lookahead": 1},
                {"fused_fwd": 1, "fused_per_sm": 2, "gram_heads": 2, "fused_sync": 2},
            ),
        ),
        ("gram_heads", (1, 2, 4, 8)),
        ("fast_path", (0, 1)),
        ("fast_lean", (0, 1)),
        ("fast_warps", (4, 8)),
        ("fast_slice", (16, 32, 64)),
        ("fast_wide_slices", (0, 1)),
        ("fast_prec", ("tf32x3", "tf32", "ieee")),
        ("fast_psum_dot", (0, 1)),
        ("fwd_state_tile", (1024, 2048, 4096)),
        ("gram_tile", (2048, 4096, 8192, 16384)),
        ("gram_warps", (4, 8)),
        ("gram_hand3", (0, 1)),
        ("gram_stages", (1, 2, 3)),
        ("fast_stages", (1, 3)),
        ("readout_stages", (1, 2, 3)),
        ("readout_tile", (2048, 4096, 8192)),
        ("readout_bv", (0, 16, 32)),
        ("readout_warps", (4, 8)),
        ("gram_own_head", (0, 1)),
        ("gram_kk_spread", (0, 1)),
    ],
    "fwdbwd": [
        ("fused_fwd", (0, 1)),
        ("bwd_sliced", (0, 1)),
        ("bwd_persistent", (0, 1)),
        ("bwd_slice", (16, 32, 64)),
        ("bwd_slice_warps", (4, 8)),
        ("bwd_state_tile", (1024, 2048, 4096)),
        ("bwd_light_tile", (1024, 2048, 4096, 8192)),
        ("bwd_warps", (4, 8)),
        ("dkdv_tile", (2048, 4096)),
        ("dkdv_warps", (4, 8)),
        ("bwd_stages", (1, 3)),
        (
            "bwd_wide",
            (
                {},
                {"bwd_state_tile": 2048, "bwd_min_bh": 32, "bwd_warps": 8},
                {"bwd_state_tile": 2048, "bwd_light_tile": 4096, "bwd_min_bh": 32, "bwd_warps": 8},
            ),
        ),
        ("dkdv_stages", (1, 2, 3)),
    ],
    "step": [("step_tile", (1024, 2048, 4096)), ("step_warps", (4, 8))],
}
SWEEP_MAX_ERR = 1e-3  # a config whose output is further than this from the fp32 eager loop is never "best"


def _step_clip(k: torch.Tensor, v: torch.Tensor, *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    state, outs = None, []
    for t in range(k.shape[1]):
        o_t, state = frame_gated_delta_step(k[:, t], v[:, t], *params, heads=HEADS, state=state, backend="triton")
        outs.append(o_t)
    return torch.stack(outs, dim=1), state


def sweep(args: argparse.Namespace) -> list[dict]:
    """Time our kernels under alternative launch configurations (TUNING), one knob at a time, each checked against
    the fp32 eager loop; prints the best value of each knob per shape and a TUNING line to paste."""
    rows = []
    defaults = dict(TUNING)
    best: dict[str, dict] = {}
    for name in args.sweep_shapes:
        b, t, n = SHAPES[name]
        inputs = make_inputs(b, t, n, torch.float32)
        with torch.no_grad():
            ref = paper_loop(*inputs)[0]
        for mode, knobs in SWEEP.items():
            fn = _step_clip if mode == "step" else ours
            for knob, values in knobs:
                if args.sweep_knobs and knob not in args.sweep_knobs:
                    continue
                for value in values:
                    TUNING.update(defaults)
                    TUNING.update(value if isinstance(value, dict) else {knob: value})  # a dict sets several knobs
                    try:
                        with torch.no_grad():
                            err = rel_rms(fn(*inputs)[0], ref)
                        ms, _ = measure(fn, inputs, "fwd" if mode == "step" else mode, args.warmup, args.rep)
                    except Exception as exc:  # noqa: BLE001  (a config that does not compile is reported, not fatal)
                        print(f"sweep {name:11s} {mode:6s} {knob:15s}={value!s:7s}: failed: {exc!r:.200}", flush=True)
                        continue
                    row = {"shape": name, "mode": mode, "knob": knob, "value": value, "ms": ms, "rel_err": err}
                    rows.append(row)
                    ok = err <= SWEEP_MAX_ERR
                    print(
                        f"sweep {name:11s} {mode:6s} {knob:15s}={value!s:7s}: {ms:8.4f} ms  err {err:.1e}"
                        + ("" if ok else "  (too inaccurate)"),
                        flush=True,
                    )
                    key = f"{name}/{knob}"
                    if ok and (key not in best or ms < best[key]["ms"]):
                        best[key] = row
    TUNING.update(defaults)
    suggestion = dict(defaults)
    for key, row in best.items():
        value = row["value"]
        print(f"best {key:32s} = {value!s:7s} ({row['ms']:.4f} ms, default {defaults.get(row['knob'], {})!s})")
        if key.startswith(args.sweep_shapes[0] + "/"):
            suggestion.update(value if isinstance(value, dict) else {row["knob"]: value})
    print("suggested TUNING (from the first sweep shape):", json.dumps(suggestion), flush=True)
    return rows


def format_table(rows: list[dict], header: bool = True) -> str:
    cols = [
        ("shape", "{}", 26), ("mode", "{}", 6), ("eager_ms", "{:.3f}", 9), ("compiled_ms", "{:.3f}", 11),
        ("ours_ms", "{:.4f}", 8), ("ours_span", "{}", 11), ("ours_graph_ms", "{:.4f}", 13),
        ("ours_host_us", "{:.0f}", 12), ("floor_us", "{:.1f}", 8), ("x_eager", "{:.1f}", 8),
        ("x_compiled", "{:.1f}", 10),
        ("eager_peak_mib", "{:.1f}", 14), ("compiled_peak_mib", "{:.1f}", 17), ("ours_peak_mib", "{:.1f}", 13),
        ("rel_err_vs_eager", "{:.1e}", 16), ("meets_targets", "{}", 13),
    ]  # fmt: skip
    lines = []
    if header:
        lines.append(" ".join(f"{c:>{w}}" for c, _, w in cols))
    for row in rows:
        lines.append(" ".join(f"{(f.format(row[c]) if c in row else '-'):>{w}}" for c, f, w in cols))
    return "\n".join(lines)


def environment() -> str:
    import triton

    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    return f"card: {card}; torch {torch.__version__}; triton {triton.__version__}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--modes", nargs="+", default=["fwd", "fwdbwd"], choices=["fwd", "fwdbwd"])
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    parser.add_argument("--compile-max-t", type=int, default=32, help="compile the whole loop up to this T")
    parser.add_argument("--warmup", type=int, default=25, help="do_bench warm-up, ms")
    parser.add_argument("--rep", type=int, default=100, help="do_bench measuring time, ms")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of eager, compiled, ours in turn; each column their median"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--sweep", action="store_true", help="also time our kernels under other launch configs")
    parser.add_argument("--sweep-only", action="store_true", help="only the sweep (no eager/compiled table)")
    parser.add_argument(
        "--sweep-shapes", nargs="+", default=["B10T10N256", "B1T200N64"], choices=list(SHAPES), help="sweep these"
    )
    parser.add_argument("--sweep-knobs", nargs="*", default=None, help="sweep only these TUNING knobs")
    parser.add_argument(
        "--tuning", default=None, help="JSON object of TUNING overrides for the whole run, e.g. '{\"fast_warps\": 4}'"
    )
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    print("frame rule:", environment(), flush=True)
    if args.tuning:
        TUNING.update(json.loads(args.tuning))
        print("TUNING overrides:", args.tuning, flush=True)
    rows = [] if args.sweep_only else run(args)
    if args.sweep or args.sweep_only:
        rows += sweep(args)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
