"""`gdkvm export --format onnx|torchscript --out FILE [--ckpt CKPT] [--size S]`: export the streaming model.

The exported graph is one streaming step with the memory state as explicit inputs and outputs; after writing, it is
verified against PyTorch over a synthetic clip (onnxruntime for ONNX) and the largest probability difference is printed.
"""

from __future__ import annotations

import argparse

import numpy as np

from gdkvm.errors import GdkvmError
from gdkvm.export import FORMATS, export_model, verify_export
from gdkvm.segment import model_input_size


def _verification_clip(size: int, frames: int) -> np.ndarray:
    """[T, S, S] float32: a synthetic echo clip at the model's input size."""
    from gdkvm.data.sampling import resize_frames
    from gdkvm.data.synthetic import make_clip

    clip = make_clip(seed=0, frames=frames)
    return resize_frames(clip[0], size)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gdkvm export", description=__doc__)
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="output file (.onnx or .pt)")
    p.add_argument("--ckpt", default="default", help="checkpoint file, or 'default' for the bundled model")
    p.add_argument("--size", type=int, default=None, help="frame size of the graph (default: the model's)")
    p.add_argument("--verify-frames", type=int, default=20, help="frames of the verification clip (0: skip)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted probability difference")
    args = p.parse_args(argv)
    from gdkvm.checkpoint import load_model

    model = load_model(args.ckpt, device="cpu")
    size = args.size or model_input_size(model)
    path = export_model(model, args.out, args.format, size=size)
    print(f"wrote {path} ({args.format}, {size}x{size}, state: streaming memory as inputs/outputs)")
    if args.verify_frames > 0:
        diff = verify_export(model, path, args.format, _verification_clip(size, args.verify_frames))
        print(f"verified over {args.verify_frames} streamed frames: max |prob difference| = {diff:.2e}")
        if diff > args.tolerance:
            raise GdkvmError(f"exported model differs from PyTorch by {diff:.2e} > {args.tolerance:.0e}")
    return 0
