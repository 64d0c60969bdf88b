"""Echo data: CAMUS and EchoNet-Dynamic loaders, clip readers, augmentation, the DataModules, synthetic data.

Names resolve lazily, so ``import gdkvm.data`` stays cheap (Lightning, albumentations and SimpleITK load only when
the class that needs them is used).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CamusDataset": "gdkvm.data.camus",
    "EchoNetDataset": "gdkvm.data.echonet",
    "ClipTransform": "gdkvm.data.transforms",
    "EchoDataModule": "gdkvm.data.datamodule",
    "collate_clips": "gdkvm.data.datamodule",
    "MixedEchoDataModule": "gdkvm.data.mixed",
    "LABEL_IDS": "gdkvm.data.sampling",
    "sample_indices": "gdkvm.data.sampling",
    "read_clip": "gdkvm.data.io",
    "write_video": "gdkvm.data.io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gdkvm.data' has no attribute {name!r}")
