"""One synchronised forward + backward of the token rule (ours, or fla-core's ``chunk_gated_delta_rule``), for tools
that watch every launch of a process: ``compute-sanitizer`` (memory errors of the kernels, attributed by kernel name)
and ``ncu`` (hardware counters per kernel). The shape is a bench shape name or any ``B..T..H..K..V..``; the
environment (GDKVM_TOKEN_*) picks our variant.

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck python3 bench/once_token.py B1T300H2K64V32
    ncu --clock-control none -k regex:_prep_kernel python3 bench/once_token.py B4T10240H8K64V64 --repeat 2
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ops_token import fla_op, make_inputs  # noqa: E402

from gdkvm.ops import chunk_gated_delta  # noqa: E402


def parse_shape(name: str) -> tuple[int, int, int, int, int]:
    """``B4T2560H8K64V64`` -> (4, 2560, 8, 64, 64)."""
    m = re.fullmatch(r"B(\d+)T(\d+)H(\d+)K(\d+)V(\d+)", name)
    if m is None:
        raise SystemExit(f"shape {name!r} is not of the form B<b>T<t>H<h>K<k>V<v>")
    return tuple(int(x) for x in m.groups())  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shapes", nargs="+")
    parser.add_argument("--impl", choices=["ours", "fla"], default="ours")
    parser.add_argument("--repeat", type=int, default=1, help="forward + backward this many times")
    parser.add_argument("--forward-only", action="store_true")
    parser.add_argument("--device", default="cuda", help="cpu: the torch reference (a smoke test of this script)")
    args = parser.parse_args()
    for shape in args.shapes:
        run_shape(shape, args)


def run_shape(shape: str, args: argparse.Namespace) -> None:
    """``args.repeat`` synchronised forward (+ backward) calls at one shape; prints whether everything is finite."""
    x = make_inputs(parse_shape(shape), device=args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    if args.impl == "fla":
        fn = fla_op(unguard=True)
    else:

        def fn(**kw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            return chunk_gated_delta(kw["q"], kw["k"], kw["v"], kw["g"], kw["beta"], output_final_state=True)

    for _ in range(args.repeat):
        leaves = {n: t.detach().requires_grad_(not args.forward_only) for n, t in x.items()}
        o, ht = fn(**leaves)
        sync()
        if not args.forward_only:
            loss = o.float().square().mean() + (ht.square().mean() if ht is not None else 0.0)
            loss.backward()
            sync()
        bad = [n for n, t in leaves.items() if t.grad is not None and not torch.isfinite(t.grad).all()]
        finite = bool(torch.isfinite(o).all()) and (ht is None or bool(torch.isfinite(ht).all()))
        print(f"{shape} {args.impl}: o finite {finite}, non-finite grads {bad or 'none'}", flush=True)


if __name__ == "__main__":
    main()
