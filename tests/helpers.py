"""Small builders shared by the tests (no network, no data set files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gdkvm.checkpoint import save_weights
from gdkvm.model import build_model


def tiny_model_file(folder: Path, *, seed: int = 0, input_size: int = 64) -> Path:
    """A randomly initialised `small` GDKVM saved as a gdkvm weights file (what `load_model` reads)."""
    torch.manual_seed(seed)
    net = build_model("small")
    return save_weights(net, folder / "tiny.pt", info={"input_size": input_size})


def noise_clip(frames: int = 12, size: tuple[int, int] = (70, 90), seed: int = 0) -> np.ndarray:
    """[T, H, W] uint8 random frames (odd-ish sizes on purpose)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(frames, *size), dtype=np.uint8)
