"""Frame rule (GDKVM's gated delta rule over frames): torch reference and Triton kernels.

See README.md in this folder for the recurrence, the backward derivation and the numerics.
"""

from __future__ import annotations

from gdkvm.ops.frame.api import frame_gated_delta, frame_gated_delta_step

__all__ = ["frame_gated_delta", "frame_gated_delta_step"]
