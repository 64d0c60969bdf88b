"""Host-side helpers shared by both ops' launchers: integer launch sizes and whether Triton is interpreting.
``triton.cdiv`` and ``triton.next_power_of_2`` are constexpr functions with a wrapper that costs a few microseconds
per call on the host, and a single op call computes several launch sizes; these plain versions give the same
values."""

from __future__ import annotations

import functools
import os


@functools.cache
def interpreting() -> bool:
    """Whether Triton runs through its CPU interpreter (TRITON_INTERPRET=1). Read once: Triton itself reads it when a
    kernel is defined (at import), and ``os.environ`` costs microseconds on every launch."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def cdiv(x: int, y: int) -> int:
    """ceil(x / y) for positive y."""
    return -(-x // y)


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= n for n >= 1 (and 0 for 0), as ``triton.next_power_of_2``."""
    return max(0, int(n)) if n <= 1 else 1 << (int(n) - 1).bit_length()
