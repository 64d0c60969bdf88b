"""Helpers shared by the CLI commands that run a model (segment, ef, demo)."""

from __future__ import annotations

import argparse

import torch


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--ckpt`` (a checkpoint path, or ``default`` for the bundled model) and ``--device``."""
    parser.add_argument("--ckpt", default="default", help="checkpoint file, or 'default' for the bundled model")
    parser.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when present, else cpu)")


def pick_device(device: str | None) -> torch.device:
    """The requested device, or the GPU when there is one, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_segmenter(ckpt: str, device: str | None) -> tuple[object, torch.nn.Module]:
    """Load a model (a checkpoint path or a bundled name) and wrap it in a streaming ``VideoSegmenter``."""
    from gdkvm.checkpoint import load_model
    from gdkvm.inference import VideoSegmenter

    dev = pick_device(device)
    model = load_model(ckpt, device=dev)
    return VideoSegmenter(model, device=dev), model
