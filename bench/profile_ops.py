"""Per-kernel GPU time of both memory ops (torch.profiler), to see which launch a speed target depends on.

Run on a CUDA machine from the repository root::

    python3 bench/profile_ops.py                       # frame rule at the issue-3 shapes, token rule at issue 7's
    python3 bench/profile_ops.py --rule token --shapes B4T10240H8K64V64
    python3 bench/profile_ops.py --rule fla --shapes B4T10240H8K64V64   # fla-core's kernels (the peer), same inputs

For each shape and mode (forward, forward + backward) it runs the public op ``--iters`` times under the profiler
(after warm-up calls that compile) and prints a table of every CUDA kernel: calls per op call, mean us per launch
and total us per op call, plus the sum of kernel time per op call and the op's wall time per call (so the gap is
host or launch overhead). Inputs are those of bench/ops_frame.py (fp32) and bench/ops_token.py (bf16).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import ops_frame  # noqa: E402
import ops_token  # noqa: E402


def op_call(rule: str, shape: str, mode: str) -> Callable[[], None]:
    """A closure running one op call (and its backward for mode "fwdbwd") on fresh inputs of ``shape``."""
    if rule == "frame":
        b, t, n = ops_frame.SHAPES[shape]
        tensors = ops_frame.make_inputs(b, t, n, torch.float32)

        def fn(xs: list[torch.Tensor]) -> torch.Tensor:
            return ops_frame.ours(*xs)[0]
    else:
        inputs = ops_token.make_inputs(ops_token.SHAPES[shape])
        names, tensors = list(inputs), list(inputs.values())
        impl = ops_token.ours if rule == "token" else ops_token.fla_op(unguard=True)

        def fn(xs: list[torch.Tensor]) -> torch.Tensor:
            return impl(**dict(zip(names, xs, strict=True)))[0]

    if mode == "fwd":

        def call() -> None:
            with torch.no_grad():
                fn(tensors)

        return call
    leaves = [x.detach().clone().requires_grad_() for x in tensors]
    d_out = torch.randn_like(fn(leaves))

    def call_bwd() -> None:
        torch.autograd.backward(fn(leaves), d_out)
        for x in leaves:
            x.grad = None

    return call_bwd


def profile_case(rule: str, shape: str, mode: str, iters: int) -> dict:
    """Kernel table of one case: {"kernels": [(name, launches per call, us per launch, us per call)], ...}."""
    call = op_call(rule, shape, mode)
    for _ in range(3):
        call()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        call()
    torch.cuda.synchronize()
    wall_us = (time.perf_counter() - start) / iters * 1e6
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            call()
        torch.cuda.synchronize()
    rows = []
    for event in prof.key_averages():
        dev_us = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0.0)
        if event.count == 0 or dev_us <= 0 or event.key.startswith(("ProfilerStep", "cudaDeviceSynchronize")):
            continue
        if getattr(event, "device_type", None) is not None and "CUDA" not in str(event.device_type):
            continue
        rows.append((event.key[:60], event.count / iters, dev_us / event.count, dev_us / iters))
    rows.sort(key=lambda r: -r[3])
    return {"rule": rule, "shape": shape, "mode": mode, "wall_us": wall_us,
            "kernel_us": sum(r[3] for r in rows), "kernels": rows}  # fmt: skip


def format_case(case: dict) -> str:
    head = (f"## {case['rule']} {case['shape']} {case['mode']}: wall {case['wall_us']:.1f} us per call, "
            f"kernels {case['kernel_us']:.1f} us")  # fmt: skip
    lines = [head, "| kernel | launches/call | us/launch | us/call |", "|---|---|---|---|"]
    lines += [f"| {n} | {c:.2f} | {u:.2f} | {t:.2f} |" for n, c, u, t in case["kernels"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rule",
        default="all",
        choices=["all", "frame", "token", "fla"],
        help="fla: fla-core's chunk_gated_delta_rule at the token rule's shapes (needs fla-core)",
    )
    parser.add_argument("--shapes", nargs="*", default=None, help="shape names of bench/ops_frame.py or ops_token.py")
    parser.add_argument("--modes", nargs="+", default=["fwd", "fwdbwd"], choices=["fwd", "fwdbwd"])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--set", nargs="*", default=[], metavar="KNOB=INT", help="frame-rule TUNING changes")
    args = parser.parse_args(argv)
    for item in args.set:
        knob, value = item.split("=")
        ops_frame.TUNING[knob] = int(value)
    if not torch.cuda.is_available():
        raise SystemExit("profile_ops.py needs a CUDA GPU")
    rules = ["frame", "token"] if args.rule == "all" else [args.rule]
    cases = []
    for rule in rules:
        table = ops_frame.SHAPES if rule == "frame" else ops_token.SHAPES  # token and fla: the same shapes
        for shape in [s for s in (args.shapes or table) if s in table]:
            for mode in args.modes:
                try:
                    case = profile_case(rule, shape, mode, args.iters)
                except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
                    print(f"## {rule} {shape} {mode}: failed: {str(err).splitlines()[0][:200]}", flush=True)
                    continue
                print(format_case(case), flush=True)
                cases.append(case)
                torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps(cases, indent=1))
    return cases


if __name__ == "__main__":
    main()
