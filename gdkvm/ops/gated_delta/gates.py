"""Chunk-local cumulative sums of the log-decay, on the host (torch), for the token-rule kernels.

The kernels read G_t = sum of g over the tokens of t's chunk up to t (``chunk_local_cumsum``) instead of scanning g
themselves, and the backward kernel returns dL/dG, which ``reverse_chunk_local_cumsum`` turns into dL/dg
(dg_t = sum of dG over the tokens of t's chunk from t on). Both work on [B, T, H] and [B, T, H, K] fp32 tensors and
any T (the last chunk may be partial).
"""

from __future__ import annotations

import torch


def _chunked(x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """x [B, T, ...] viewed as [B, NT, C, ...]: a view when T is a multiple of chunk_size (no copy: the common case,
    one op per call on the host), else zero-padded at the end of T."""
    batch, length = x.shape[:2]
    pad = -length % chunk_size
    if pad:
        x = torch.cat([x, x.new_zeros(batch, pad, *x.shape[2:])], dim=1)
    return x.view(batch, (length + pad) // chunk_size, chunk_size, *x.shape[2:])


def _unchunked(x: torch.Tensor, length: int) -> torch.Tensor:
    """[B, NT, C, ...] back to a contiguous [B, T, ...] (dropping the padding)."""
    flat = x.flatten(1, 2)
    return flat if flat.shape[1] == length else flat[:, :length].contiguous()


def chunk_local_cumsum(g: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """G [B, T, H(, K)] fp32: the inclusive cumulative sum of g within each chunk of ``chunk_size`` tokens."""
    return _unchunked(_chunked(g.float(), chunk_size).cumsum(2), g.shape[1])


def reverse_chunk_local_cumsum(d_big_g: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """dg [B, T, H(, K)] fp32 from dG (the gradient of ``chunk_local_cumsum``'s output): the inclusive cumulative
    sum of dG within each chunk, from the chunk's last token backwards."""
    return _unchunked(_chunked(d_big_g, chunk_size).flip(2).cumsum(2).flip(2), d_big_g.shape[1])
