"""The split prep's first launch (``GDKVM_TOKEN_PREP=split``, per-head gate, chunk 64): each chunk's UT inverse
T = (I + L)^-1 built from 16 x 16 blocks, one warp per (chunk, batch*head), as fla-core's Gram + solve kernel is laid
out. The fused prep (``chunk_fwd._prep_kernel``) holds [64, 64] fp32 tiles (64 registers each at its 2 warps; 255
registers per thread and 12.5% occupancy on an H200, docs/benchmarks.md token rule, eleventh round); here every tile
is [16, 16]. The prep's second launch is ``_prep_kernel`` with SOLVE = 3: T is loaded, not computed.

With L_ij the [16, 16] blocks of L = strict-lower(beta_i k_i^T k_j e^{G_i - G_j}) (i, j = 0..3 block rows/columns),
the diagonal blocks are inverted by forward substitution (T_ii = (I + L_ii)^-1) and the blocks below the diagonal
follow from (I + L) T = I, row block by row block:

    T_ij = -T_ii (L_ij T_jj + L_i,j+1 T_j+1,j + ... + L_i,i-1 T_i-1,j)        (j < i)

T is stored in fp32 ([B, T, H, 64], upper blocks zero) where the fused prep stores it for the backward.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gdkvm.ops.gated_delta.launch import heuristic, prec


@triton.jit
def _inv16(lower):
    """(I + L)^-1 of a strictly lower [16, 16] fp32 tile: row r = e_r - sum_{c<r} L[r, c] T[c, :], 15 steps."""
    o = tl.arange(0, 16)
    eye = tl.where(o[:, None] == o[None, :], 1.0, 0.0)
    t = eye
    for r in tl.static_range(1, 16):
        a = tl.sum(tl.where(o[:, None] == r, lower, 0.0), 0)  # row r of L, [16] over columns c
        new = tl.sum(a[:, None] * t, 0)  # sum_c L[r, c] T[c, :], [16]
        t = tl.where(o[:, None] == r, eye - new[None, :], t)
    return t


@triton.jit
def _block_rows(k_ptr, beta_ptr, gc_ptr, tok0, i_h, n_valid, g_last, H: tl.constexpr, K: tl.constexpr,
                B_IDX: tl.constexpr, BK: tl.constexpr):  # fmt: skip
    """Block row B_IDX of the chunk: k [16, BK] (input dtype), beta [16] and G [16] (fp32; rows past the clip's end
    hold G_C, so every pairwise decay e^{G_i - G_j} with i >= j stays <= 1), and the row mask [16]."""
    o_s = tl.arange(0, 16)
    cols = tl.arange(0, BK)
    r = B_IDX * 16 + o_s
    m = r < n_valid
    th = (tok0 + r) * H + i_h
    kb = tl.load(k_ptr + th[:, None] * K + cols[None, :], mask=m[:, None] & (cols < K)[None, :], other=0.0)
    bb = tl.load(beta_ptr + th, mask=m, other=0.0).to(tl.float32)
    gb = tl.where(m, tl.load(gc_ptr + th, mask=m, other=0.0), g_last)
    return kb, bb, gb, th, m


@triton.jit
def _gram_block(k_i, b_i, g_i, k_j, g_j, DIAG: tl.constexpr):
    """L_ij = beta_i k_i k_j^T e^{G_i - G_j} [16, 16] fp32; on the diagonal (DIAG) its strictly lower part, the
    exponent masked before exp."""
    o = tl.arange(0, 16)
    p = tl.dot(k_i, tl.trans(k_j))
    if DIAG:
        below = o[:, None] > o[None, :]
        return tl.where(below, b_i[:, None] * p * tl.exp(tl.where(below, g_i[:, None] - g_j[None, :], 0.0)), 0.0)
    else:
        return b_i[:, None] * p * tl.exp(g_i[:, None] - g_j[None, :])


@triton.jit
def _store_block(t_ptr, th, m, blk, J: tl.constexpr, BT: tl.constexpr):
    """Stores [16, 16] block ``blk`` at block column J of the block row whose token-head rows are ``th``."""
    o = tl.arange(0, 16)
    tl.store(t_ptr + th[:, None] * BT + J * 16 + o[None, :], blk, mask=m[:, None])


@triton.jit
def _gram_solve_kernel(k_ptr, gc_ptr, beta_ptr, t_ptr, T, H: tl.constexpr, K: tl.constexpr, C0, BK: tl.constexpr,
                       PREC: tl.constexpr):  # fmt: skip
    """T = (I + L)^-1 of one chunk of 64 tokens for one batch*head (chunks [C0, C0 + grid) of the clip), fp32 into
    t_ptr [B*T, H, 64]."""
    i_t = tl.program_id(0) + C0
    i_bh = tl.program_id(1)
    i_h = i_bh % H
    tok0 = (i_bh // H).to(tl.int64) * T + i_t * 64
    n_valid = T - i_t * 64
    g_last = tl.load(gc_ptr + (tok0 + tl.minimum(n_valid, 64) - 1) * H + i_h)
    k0, b0, g0, th0, m0 = _block_rows(k_ptr, beta_ptr, gc_ptr, tok0, i_h, n_valid, g_last, H, K, 0, BK)
    k1, b1, g1, th1, m1 = _block_rows(k_ptr, beta_ptr, gc_ptr, tok0, i_h, n_valid, g_last, H, K, 1, BK)
    k2, b2, g2, th2, m2 = _block_rows(k_ptr, beta_ptr, gc_ptr, tok0, i_h, n_valid, g_last, H, K, 2, BK)
    k3, b3, g3, th3, m3 = _block_rows(k_ptr, beta_ptr, gc_ptr, tok0, i_h, n_valid, g_last, H, K, 3, BK)
    t00 = _inv16(_gram_block(k0, b0, g0, k0, g0, True))
    t11 = _inv16(_gram_block(k1, b1, g1, k1, g1, True))
    t22 = _inv16(_gram_block(k2, b2, g2, k2, g2, True))
    t33 = _inv16(_gram_block(k3, b3, g3, k3, g3, True))
    l10 = _gram_block(k1, b1, g1, k0, g0, False)
    l20 = _gram_block(k2, b2, g2, k0, g0, False)
    l21 = _gram_block(k2, b2, g2, k1, g1, False)
    l30 = _gram_block(k3, b3, g3, k0, g0, False)
    l31 = _gram_block(k3, b3, g3, k1, g1, False)
    l32 = _gram_block(k3, b3, g3, k2, g2, False)
    t10 = -tl.dot(t11, tl.dot(l10, t00, input_precision=PREC), input_precision=PREC)
    t21 = -tl.dot(t22, tl.dot(l21, t11, input_precision=PREC), input_precision=PREC)
    t20 = -tl.dot(t22, tl.dot(l20, t00, input_precision=PREC) + tl.dot(l21, t10, input_precision=PREC),
                  input_precision=PREC)  # fmt: skip
    t32 = -tl.dot(t33, tl.dot(l32, t22, input_precision=PREC), input_precision=PREC)
    t31 = -tl.dot(t33, tl.dot(l31, t11, input_precision=PREC) + tl.dot(l32, t21, input_precision=PREC),
                  input_precision=PREC)  # fmt: skip
    s30 = tl.dot(l30, t00, input_precision=PREC) + tl.dot(l31, t10, input_precision=PREC)
    t30 = -tl.dot(t33, s30 + tl.dot(l32, t20, input_precision=PREC), input_precision=PREC)
    zero = tl.zeros([16, 16], dtype=tl.float32)
    _store_block(t_ptr, th0, m0, t00, 0, 64)
    _store_block(t_ptr, th0, m0, zero, 1, 64)
    _store_block(t_ptr, th0, m0, zero, 2, 64)
    _store_block(t_ptr, th0, m0, zero, 3, 64)
    _store_block(t_ptr, th1, m1, t10, 0, 64)
    _store_block(t_ptr, th1, m1, t11, 1, 64)
    _store_block(t_ptr, th1, m1, zero, 2, 64)
    _store_block(t_ptr, th1, m1, zero, 3, 64)
    _store_block(t_ptr, th2, m2, t20, 0, 64)
    _store_block(t_ptr, th2, m2, t21, 1, 64)
    _store_block(t_ptr, th2, m2, t22, 2, 64)
    _store_block(t_ptr, th2, m2, zero, 3, 64)
    _store_block(t_ptr, th3, m3, t30, 0, 64)
    _store_block(t_ptr, th3, m3, t31, 1, 64)
    _store_block(t_ptr, th3, m3, t32, 2, 64)
    _store_block(t_ptr, th3, m3, t33, 3, 64)


def launch_gram_solve(k: torch.Tensor, gc: torch.Tensor, beta: torch.Tensor, t_inv: torch.Tensor, block_k: int,
                      chunks: tuple[int, int]) -> None:  # fmt: skip
    """Fills t_inv [B, T, H, 64] fp32 with each chunk's (I + L)^-1 for the chunks [c0, c1) of ``chunks``; k
    [B, T, H, K] (input dtype), gc [B, T, H] fp32 (chunk-local cumulative log-decay), beta [B, T, H]."""
    batch, length, heads, key_dim = k.shape
    cfg = heuristic("gram", key_dim, 16, batch * heads)
    c0, c1 = chunks
    _gram_solve_kernel[(c1 - c0, batch * heads)](
        k, gc, beta, t_inv, length, heads, key_dim, c0, BK=block_k, PREC=prec(k.dtype),
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )  # fmt: skip
