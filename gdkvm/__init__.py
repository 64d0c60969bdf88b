"""gdkvm: echocardiography video segmentation with a gated-delta-rule key-value memory.

The main entry points are re-exported lazily (``import gdkvm`` stays cheap): ``GDKVM`` (the network),
``load_model`` (a checkpoint or ``"default"``), ``VideoSegmenter`` (streaming inference), ``compute_ef`` (EF from
masks) and ``read_clip`` / ``write_video`` (echo clip I/O).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "GDKVM": "gdkvm.model",
    "build_model": "gdkvm.model",
    "load_model": "gdkvm.checkpoint",
    "VideoSegmenter": "gdkvm.inference",
    "compute_ef": "gdkvm.ef",
    "read_clip": "gdkvm.data.io",
    "write_video": "gdkvm.data.video",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gdkvm' has no attribute {name!r}")
