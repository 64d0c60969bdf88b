"""Chunk-local cumulative sums of the log-decay, on the host (torch), for the token-rule kernels.

The kernels read G_t = sum of g over the tokens of t's chunk up to t (``chunk_local_cumsum``) instead of scanning g
themselves, and the backward kernel returns dL/dG, which ``reverse_chunk_local_cumsum`` turns into dL/dg
(dg_t = sum of dG over the tokens of t's chunk from t on). Both work on [B, T, H] and [B, T, H, K] fp32 tensors and
any T (the last chunk may be partial).
"""

from __future__ import annotations

import torch


def _chunked(x: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, int]:
    """x [B, T, ...] zero-padded to a multiple of chunk_size and viewed as [B, NT, C, ...]; returns it and T."""
    batch, length = x.shape[:2]
    n_chunks = -(-length // chunk_size)
    padded = x.new_zeros(batch, n_chunks * chunk_size, *x.shape[2:])
    padded[:, :length] = x
    return padded.view(batch, n_chunks, chunk_size, *x.shape[2:]), length


def chunk_local_cumsum(g: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """G [B, T, H(, K)] fp32: the inclusive cumulative sum of g within each chunk of ``chunk_size`` tokens."""
    chunks, length = _chunked(g.float(), chunk_size)
    return chunks.cumsum(2).flatten(1, 2)[:, :length].contiguous()


def reverse_chunk_local_cumsum(d_big_g: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """dg [B, T, H(, K)] fp32 from dG (the gradient of ``chunk_local_cumsum``'s output): the inclusive cumulative
    sum of dG within each chunk, from the chunk's last token backwards."""
    chunks, length = _chunked(d_big_g, chunk_size)
    return chunks.flip(2).cumsum(2).flip(2).flatten(1, 2)[:, :length].contiguous()
