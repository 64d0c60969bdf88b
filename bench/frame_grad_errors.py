"""Relative RMS errors of the frame op's outputs and gradients against a float64 reference, for each backward path.

Run on a CUDA machine from the repository root (fp32 inputs of tests/ops/test_frame_gpu.py)::

    python3 bench/frame_grad_errors.py --shapes B2T10N1024 B10T10N256

For each shape it prints one row per variant: the Triton op with the value-sliced reverse walk (one launch, and one
launch per frame), with the one-program walk, and the fp32 torch reference itself, each against the same loss
computed by the torch reference in float64. It says whether an error at the edge of the GPU tests' 1e-3 bound is
the kernels' or the fp32 arithmetic's (the fp32 reference carries it too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gdkvm.ops.frame.tuning import TUNING  # noqa: E402
from tests.ops.test_frame_gpu import make_inputs, rel_rms, run  # noqa: E402

SHAPES = {"B2T10N1024": (2, 10, 1024, 64, 256, 8), "B10T10N256": (10, 10, 256, 64, 256, 8)}
VARIANTS = {
    "sliced, one launch": {"bwd_sliced": 1, "bwd_persistent": 1},
    "sliced, launch per frame": {"bwd_sliced": 1, "bwd_persistent": 0},
    "one program per clip": {"bwd_sliced": 0},
    "sliced; forward recurrence in fp32 FMA dots": {"fast_prec": "ieee"},
}


def errors(got: tuple, ref: tuple) -> dict[str, float]:
    out = {"o": rel_rms(got[0], ref[0]), "final": rel_rms(got[1], ref[1])}
    out |= {f"d{n}": rel_rms(g, ref[2][n]) for n, g in got[2].items() if g is not None and ref[2][n] is not None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    defaults = dict(TUNING)
    for name in args.shapes:
        torch.manual_seed(0)
        inp = make_inputs(SHAPES[name], torch.float32, with_state=False)
        ref = run({n: (x.double() if isinstance(x, torch.Tensor) else x) for n, x in inp.items()}, "naive", False)
        rows = {"fp32 torch reference": errors(run(inp, "naive", False), ref)}
        for label, knobs in VARIANTS.items():
            TUNING.update(knobs)
            rows[label] = errors(run(inp, "triton", False), ref)
            TUNING.update(defaults)
        cols = list(rows["fp32 torch reference"])
        print(f"## {name}, fp32 inputs, relative RMS error against float64")
        print("| variant | " + " | ".join(cols) + " |")
        print("|---|" + "---|" * len(cols))
        for label, errs in rows.items():
            print(f"| {label} | " + " | ".join(f"{errs.get(c, float('nan')):.1e}" for c in cols) + " |")


if __name__ == "__main__":
    main()
