"""Token rule: the chunkwise gated delta rule (DeltaNet / Gated DeltaNet / KDA decay) and its torch references.

See README.md in this folder for the recurrence, the chunk (UT / WY) form and its backward.
"""

from __future__ import annotations

from gdkvm.ops.gated_delta.chunk import chunk_gated_delta
from gdkvm.ops.gated_delta.naive import naive_chunk_gated_delta, naive_recurrent_gated_delta

__all__ = ["chunk_gated_delta", "naive_chunk_gated_delta", "naive_recurrent_gated_delta"]
