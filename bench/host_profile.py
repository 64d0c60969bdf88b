"""Where the frame op's host time goes: cProfile of repeated calls (forward under no_grad, or forward + backward),
on a CUDA machine.

Run from the repository root: ``python3 bench/host_profile.py [--shape B10T10N256] [--mode fwd|fwdbwd]
[--calls 300]``. Prints the functions with the most own time (tottime) per call, in microseconds, and the op's host
time per call (``time.perf_counter`` around the call, no synchronisation: the GPU work runs behind it).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ops_frame  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="B10T10N256", choices=list(ops_frame.SHAPES))
    parser.add_argument("--mode", default="fwd", choices=["fwd", "fwdbwd"])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    b, t, n = ops_frame.SHAPES[args.shape]
    leaves = [x.detach().requires_grad_(args.mode == "fwdbwd") for x in ops_frame.make_inputs(b, t, n, torch.float32)]
    do = torch.randn_like(leaves[1])

    def call() -> None:
        if args.mode == "fwd":
            with torch.no_grad():
                ops_frame.ours(*leaves)
        else:
            ops_frame.ours(*leaves)[0].backward(do)

    for _ in range(5):
        call()
    torch.cuda.synchronize()
    host = []
    for _ in range(args.calls):
        t0 = time.perf_counter()
        call()
        host.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
    print(f"{args.shape} {args.mode} host time per call: median {sorted(host)[len(host) // 2] * 1e6:.0f} us")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(args.calls):
        call()
        torch.cuda.synchronize()
    prof.disable()
    stats = pstats.Stats(prof)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:30]
    print("| function | calls per op call | own us per op call | cumulative us per op call |")
    print("|---|---|---|---|")
    for (file, line, name), (_, ncalls, tottime, cumtime, _) in rows:
        where = f"{Path(file).name}:{line}({name})"
        per_call = (ncalls / args.calls, tottime / args.calls * 1e6, cumtime / args.calls * 1e6)
        print(f"| {where} | {per_call[0]:.1f} | {per_call[1]:.1f} | {per_call[2]:.1f} |")


if __name__ == "__main__":
    main()
