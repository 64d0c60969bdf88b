"""Memory-update ops of gdkvm: the frame rule (the paper's GDR) and the token rule (chunkwise gated delta rule).

Both follow one contract: batch-first inputs, fp32 state, ``initial_state`` in and ``(output, final_state)`` out, so a
clip gives the same result in one call or streamed. Names resolve lazily, so ``import gdkvm.ops`` stays cheap and does
not import Triton until a kernel is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "frame_gated_delta": "gdkvm.ops.frame",
    "frame_gated_delta_step": "gdkvm.ops.frame",
    "chunk_gated_delta": "gdkvm.ops.gated_delta",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gdkvm.ops' has no attribute {name!r}")
