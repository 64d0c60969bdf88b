"""Frame-rule launch configurations (``TUNING`` settings) against each other, alternating in one process (a host's
speed and a card's clocks drift between processes): per shape, mode and setting the op's median time
(``triton.testing.do_bench``, as the issue table), for the forward also its time replayed as a CUDA graph (kernels
only) and its host time per call, and the output's relative error against the paper's eager loop.

Run from the repository root on a CUDA machine::

    python3 bench/knob_ab.py --configs walk_readout=0 walk_readout=2 walk_readout=2,walk_read_tile=2048 \
        --shapes B10T10N256 B32T10N256 --modes fwd --rounds 3

Each setting is a comma-separated list of KNOB=INT applied on top of the defaults. Prints one markdown row per
shape, mode and setting (medians over the rounds).
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

from gdkvm.ops.frame.tuning import TUNING  # noqa: E402


def parse_config(text: str) -> dict[str, int]:
    """ "a=1,b=2" -> {"a": 1, "b": 2}; every name must be a TUNING knob."""
    out = {}
    for item in text.split(","):
        knob, _, value = item.partition("=")
        if knob not in TUNING or not value:
            raise SystemExit(f"--configs: {item!r} is not KNOB=INT with a TUNING knob")
        out[knob] = int(value)
    return out


def time_call(call: Callable[[], None], forward: bool) -> tuple[float, float, float]:
    """(do_bench median ms, CUDA-graph replay ms or nan, median host us per call) of one op call."""
    for _ in range(3):
        call()
    torch.cuda.synchronize()
    ms = float(triton.testing.do_bench(call, warmup=25, rep=100, return_mode="median"))
    graph_ms = float("nan")
    if forward:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            call()
        graph_ms = float(triton.testing.do_bench(graph.replay, warmup=25, rep=100, return_mode="median"))
    host = []
    for _ in range(30):
        t0 = time.perf_counter()
        call()
        host.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
    return ms, graph_ms, statistics.median(host) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", required=True, help="settings, each KNOB=INT[,KNOB=INT...]")
    parser.add_argument("--shapes", nargs="+", default=["B10T10N256"], choices=list(ops_frame.SHAPES))
    parser.add_argument("--modes", nargs="+", default=["fwd"], choices=["fwd", "fwdbwd"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configs = [parse_config(c) for c in args.configs]
    defaults = dict(TUNING)
    print(f"card: {torch.cuda.get_device_name()}; torch {torch.__version__}; triton {triton.__version__}")
    print("| shape | mode | setting | ms | graph ms | host us | rel. err vs eager |")
    print("|---|---|---|---|---|---|---|")
    for name in args.shapes:
        inputs = ops_frame.make_inputs(*ops_frame.SHAPES[name], torch.float32)
        with torch.no_grad():
            ref = ops_frame.paper_loop(*inputs)[0]
        for mode in args.modes:
            got: dict[int, list] = {i: [] for i in range(len(configs))}
            errs = {}
            for _ in range(args.rounds):
                for i, config in enumerate(configs):
                    TUNING.update(defaults)
                    TUNING.update(config)
                    with torch.no_grad():
                        errs[i] = ops_frame.rel_rms(ops_frame.ours(*inputs)[0], ref)
                    call = ops_frame.op_call(ops_frame.ours, inputs, mode, clear_grads=True)[0]
                    got[i].append(time_call(call, mode == "fwd"))
            for i, text in enumerate(args.configs):
                ms, graph_ms, host = (statistics.median(r[j] for r in got[i]) for j in range(3))
                print(f"| {name} | {mode} | {text} | {ms:.4f} | {graph_ms:.4f} | {host:.0f} | {errs[i]:.1e} |",
                      flush=True)  # fmt: skip
    TUNING.update(defaults)


if __name__ == "__main__":
    main()
