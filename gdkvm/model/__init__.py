"""The GDKVM network (no Lightning here): ``GDKVM``, its presets and ``build_model``."""

from __future__ import annotations

from gdkvm.model.gdkvm import GDKVM, KeyFeatures
from gdkvm.model.presets import MODEL_PRESETS, build_model

__all__ = ["GDKVM", "MODEL_PRESETS", "KeyFeatures", "build_model"]
