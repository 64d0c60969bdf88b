"""`gdkvm export --format onnx|torchscript --out FILE [--ckpt CKPT] [--size S] [--force]`: export the streaming model.

The exported graph is one streaming step with the memory state as explicit inputs and outputs (batch 1, fp32, a
fixed frame size: the model's own by default); after writing, it is verified against PyTorch over a streamed
synthetic clip (onnxruntime on the CPU for ONNX) and the largest probability difference is printed. An existing
output file is never replaced without --force.
"""

from __future__ import annotations

import argparse

import numpy as np

from gdkvm.errors import GdkvmError, InputError
from gdkvm.export import FORMATS, check_out_path, export_model, require_onnx, state_names, verify_export
from gdkvm.segment import model_input_size


def _verification_clip(size: int, frames: int) -> np.ndarray:
    """[T, S, S] float32 in [0, 1]: a synthetic echo clip at the model's input size."""
    from gdkvm.data.sampling import resize_frames
    from gdkvm.data.synthetic import make_clip

    clip = make_clip(seed=0, frames=frames)
    return resize_frames(clip[0], size)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gdkvm export", description=__doc__)
    p.add_argument("--format", required=True, choices=FORMATS, help="onnx (onnxruntime) or torchscript (torch.jit)")
    p.add_argument("--out", required=True, help="output file (.onnx or .pt)")
    p.add_argument("--ckpt", default="default", help="checkpoint file, or 'default' for the bundled model")
    p.add_argument("--size", type=int, default=None, help="frame size of the graph (default: the model's)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--verify-frames", type=int, default=20, help="frames of the verification clip (0: skip)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted probability difference")
    args = p.parse_args(argv)
    if args.size is not None and (args.size < 16 or args.size % 16):
        raise InputError(f"--size must be a positive multiple of 16, got {args.size}")
    if args.format == "onnx":
        require_onnx(runtime=args.verify_frames > 0)  # fail before loading anything
    check_out_path(args.out, args.force)
    from gdkvm.checkpoint import load_model

    model = load_model(args.ckpt, device="cpu")
    size = args.size or model_input_size(model)
    path = export_model(model, args.out, args.format, size=size, overwrite=args.force)
    names = ", ".join(state_names(model, size))
    print(f"wrote {path} ({args.format}, frame 1x1x{size}x{size}, state in and out: {names})")
    if args.verify_frames > 0:
        diff = verify_export(model, path, args.format, _verification_clip(size, args.verify_frames))
        print(f"verified over {args.verify_frames} streamed frames: max |prob difference| vs PyTorch = {diff:.2e}")
        if diff > args.tolerance:
            raise GdkvmError(f"exported model differs from PyTorch by {diff:.2e} > {args.tolerance:.0e}")
    return 0
