"""A launch cache off against on, alternating in one process (a host's speed drifts between processes): the frame
op's time as the issue table measures it (``triton.testing.do_bench``, median) and its host time per call, on CUDA.
``--knob launch_cache`` (the general cache, keyed per argument) or ``--knob plan_launch`` (the forward's launches keyed
by their memoised plan); the other one is off throughout.

Run from the repository root: ``python3 bench/launch_cache_ab.py [--knob plan_launch] [--shapes B10T10N64
B10T10N256] [--rounds 5]``. Prints one table row per shape and mode, and how many launches went through the JIT while
the cache was on after its first round (0 for the forward: every key seen before).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import triton.testing

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ops_frame  # noqa: E402

from gdkvm.ops.frame import tuning  # noqa: E402


def measure(call, calls: int) -> tuple[float, float]:
    """(do_bench median ms, median host us of one call followed by a synchronisation)."""
    ms = triton.testing.do_bench(call, warmup=25, rep=100, return_mode="median")
    host = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        host.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
    return float(ms), statistics.median(host) * 1e6


def make_call(name: str, mode: str) -> Callable[[], None]:
    """One frame-op call of the issue table's inputs: a no-grad forward, or forward + backward."""
    b, t, n = ops_frame.SHAPES[name]
    return ops_frame.op_call(ops_frame.ours, ops_frame.make_inputs(b, t, n, torch.float32), mode)[0]


def ab_row(
    call: Callable[[], None], knob: str, rounds: int, calls: int, slow_calls: list[int]
) -> tuple[list, list, int]:
    """Medians over alternating rounds: ([ms, host us] off, [ms, host us] on, JIT launches while on after round 0)."""
    got = {0: [], 1: []}
    slow_on = 0
    for r in range(rounds):
        for on in (0, 1):
            tuning.TUNING[knob] = on
            before = slow_calls[0]
            got[on].append(measure(call, calls))
            if on and r:
                slow_on += slow_calls[0] - before
    med = [[statistics.median(x[i] for x in got[on]) for i in (0, 1)] for on in (0, 1)]
    return med[0], med[1], slow_on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["B10T10N64", "B10T10N256"], choices=list(ops_frame.SHAPES))
    parser.add_argument("--modes", nargs="+", default=["fwd", "fwdbwd"], choices=["fwd", "fwdbwd"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--knob", default="launch_cache", choices=["launch_cache", "plan_launch"])
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    slow_calls = [0]
    jit_launch = tuning._jit_launch

    def counting(*a: object, **kw: object) -> object:
        slow_calls[0] += 1
        return jit_launch(*a, **kw)

    tuning._jit_launch = counting  # ``tuning.launch`` looks it up on every call
    for knob in ("launch_cache", "plan_launch"):
        tuning.TUNING[knob] = 0
    print(f"knob: {args.knob}")
    print("| shape | mode | off: ms | on: ms | off: host us | on: host us | JIT launches while on |")
    print("|---|---|---|---|---|---|---|")
    for name in args.shapes:
        for mode in args.modes:
            off, on, slow_on = ab_row(make_call(name, mode), args.knob, args.rounds, args.calls, slow_calls)
            row = f"| {name} | {mode} | {off[0]:.4f} | {on[0]:.4f} | {off[1]:.0f} | {on[1]:.0f} | {slow_on} |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
