"""Named model sizes. ``full`` is the paper's network (~35 M parameters); ``small`` trains on a CPU in tests."""

from __future__ import annotations

from typing import Any

from gdkvm.model.gdkvm import GDKVM

MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "small": {
        "key_encoder": "resnet18",
        "key_width": 16,
        "key_depths": (1, 1, 1),
        "value_encoder": "resnet18",
        "value_width": 16,
        "value_depths": (1, 1, 1),
        "pix_dim": 64,
        "key_dim": 16,
        "value_dim": 64,
        "heads": 4,
        "sensory_dim": 32,
        "embed_dim": 32,
        "transformer_blocks": 1,
        "transformer_heads": 4,
        "num_queries": 8,
        "ff_dim": 64,
        "decoder_dims": (32, 16),
        "full_res_dim": 8,
    },
}


def build_model(preset: str = "full", **overrides: Any) -> GDKVM:
    """Build a GDKVM from a preset, with keyword overrides (e.g. ``num_classes=3``, ``update_rule="token"``).

    Args:
        preset: a key of ``MODEL_PRESETS``.
        **overrides: any ``GDKVM`` constructor keyword.

    Returns:
        the model (random init unless ``backbone_weights`` is given).
    """
    if preset not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(MODEL_PRESETS)}")
    return GDKVM(**{**MODEL_PRESETS[preset], **overrides})
