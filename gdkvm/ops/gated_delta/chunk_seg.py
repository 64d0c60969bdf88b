"""Segment-parallel scan of the token rule's two sequential passes (``GDKVM_TOKEN_SEGMENTS``; derivation in
README.md). Over a segment of chunks the state map is affine: S_end = M S_start + b forward, dS_start = N dS_end + c
backward. Phase 1 (``_seg_fwd_kernel`` / ``_seg_bwd_kernel``) summarises every segment in parallel, phase 2
(``_seg_combine_kernel``) chains the summaries serially into each segment's starting state (``segment_starts`` runs
both); phase 3 is the ordinary state pass, one program per segment.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gdkvm.ops._host import cdiv
from gdkvm.ops.gated_delta.chunk_jit import (
    _bwd_chunk,
    _chunk_rows,
    _gate_load,
    _program_bh_segment,
    _seg_columns,
    _state_update,
)


@triton.jit
def _seg_fwd_kernel(
    k_ptr, gc_ptr, w_ptr, u_ptr, sum_ptr, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, NT, NS, CPS, NVT,
    PER_CHANNEL: tl.constexpr, SPLIT16: tl.constexpr, KEY_DECAY: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr,
):  # fmt: skip
    """Segment summary (segment-parallel forward, phase 1): over the chunks of segment i_s the state map is affine,
    S_end = M S_start + b. Column tiles i_c < NVT run the recurrence from S = 0 with the chunk's u (giving b, the V
    value columns); the others run it from S = I with u = 0 (giving M, K columns). sum_ptr: [B*H*NS, K, V + K]."""
    i_c = tl.program_id(0)
    i_bhs, i_bh, i_s, i_b, i_h = _program_bh_segment(NS, H)
    dt = w_ptr.dtype.element_ty
    cols = tl.arange(0, BK)
    mcol = cols < K
    is_val, cv, mc, state = _seg_columns(i_c, NVT, K, V, BK, BV)
    c_end = tl.minimum(NT, (i_s + 1) * CPS)
    for i_t in range(i_s * CPS, c_end):
        th, mrow = _chunk_rows(i_b, i_t, i_h, T, H, BT)
        m_k = mrow[:, None] & mcol[None, :]
        m_v = mrow[:, None] & (cv < tl.where(is_val, V, 0))[None, :]
        kt = tl.load(k_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
        wt = tl.load(w_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
        ut = tl.load(u_ptr + th[:, None] * V + cv[None, :], mask=m_v, other=0.0).to(tl.float32)
        G, G_last = _gate_load(gc_ptr, th, mrow, cols, mcol, K, PER_CHANNEL)
        pseudo = ut - tl.dot(wt, state.to(dt))
        state = _state_update(kt, pseudo, state, G, G_last, dt, PER_CHANNEL, SPLIT16, KEY_DECAY)
    out_col = tl.where(is_val, cv, V + cv)
    tl.store(sum_ptr + i_bhs.to(tl.int64) * K * (V + K) + cols[:, None] * (V + K) + out_col[None, :], state,
             mask=mcol[:, None] & mc[None, :])  # fmt: skip


@triton.jit
def _seg_combine_kernel(
    sum_ptr, h0_ptr, start_ptr, K: tl.constexpr, V: tl.constexpr, NS,
    HAS_H0: tl.constexpr, REVERSE: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BKC: tl.constexpr,
):  # fmt: skip
    """Segment-parallel phase 2, serial over the NS segments of one (value tile, batch*head): S = h0 (or 0), then
    for each segment s (in order, or from NS - 1 down with REVERSE, for the backward's dS) store S as the segment's
    starting state in start_ptr ([B*H*NS, K, V] fp32) and apply the segment map S <- M_s S + b_s read from the
    summary ([B*H*NS, K, V + K]: b_s in the first V columns, M_s in the last K). IEEE fp32 products (NS steps)."""
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1)
    cols = tl.arange(0, BK)
    cv = i_v * BV + tl.arange(0, BV)
    mcol = cols < K
    m_s = mcol[:, None] & (cv < V)[None, :]
    p_s = cols[:, None] * V + cv[None, :]
    if HAS_H0:
        state = tl.load(h0_ptr + i_bh.to(tl.int64) * K * V + p_s, mask=m_s, other=0.0).to(tl.float32)
    else:
        state = tl.zeros([BK, BV], dtype=tl.float32)
    for j in range(NS):
        if REVERSE:
            i_s = NS - 1 - j
        else:
            i_s = j
        base = (i_bh.to(tl.int64) * NS + i_s) * K * (V + K)
        start = start_ptr + (i_bh.to(tl.int64) * NS + i_s) * K * V
        tl.store(start + p_s, state, mask=m_s)
        tl.debug_barrier()  # the stored state is re-read below in row blocks, by other threads
        state = tl.load(sum_ptr + base + cols[:, None] * (V + K) + cv[None, :], mask=m_s, other=0.0)  # b_s
        # M_s S over BKC-row blocks of S (M whole would need K * K * 4 bytes of shared memory: 256 KB at K 256)
        for c0 in range(0, BK, BKC):
            rc = c0 + tl.arange(0, BKC)
            m_blk = tl.load(sum_ptr + base + cols[:, None] * (V + K) + V + rc[None, :],
                            mask=mcol[:, None] & (rc < K)[None, :], other=0.0)  # fmt: skip
            s_blk = tl.load(start + rc[:, None] * V + cv[None, :], mask=(rc < K)[:, None] & (cv < V)[None, :],
                            other=0.0)  # fmt: skip
            state += tl.dot(m_blk, s_blk, input_precision="ieee")
        tl.debug_barrier()  # all reads of this segment's start are done before the next iteration's store


@triton.jit
def _seg_bwd_kernel(
    q_ptr, k_ptr, gc_ptr, w_ptr, a_ptr, do_ptr, sum_ptr, scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    NT, NS, CPS, NVT,
    PER_CHANNEL: tl.constexpr, SPLIT16: tl.constexpr, KEY_DECAY: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr,
):  # fmt: skip
    """Segment summary of the reverse pass (phase 1): dS_start = N dS_end + c over segment i_s. Column tiles
    i_c < NVT run the reverse recurrence from dS = 0 with the chunk's dO (c, V columns); the others from dS = I
    with dO = 0 (N, K columns). sum_ptr: [B*H*NS, K, V + K] fp32."""
    i_c = tl.program_id(0)
    i_bhs, i_bh, i_s, i_b, i_h = _program_bh_segment(NS, H)
    cols = tl.arange(0, BK)
    mcol = cols < K
    is_val, cv, mc, dstate = _seg_columns(i_c, NVT, K, V, BK, BV)
    c0 = i_s * CPS
    c_end = tl.minimum(NT, c0 + CPS)
    for j in range(c0, c_end):
        i_t = c_end - 1 - (j - c0)
        th, mrow = _chunk_rows(i_b, i_t, i_h, T, H, BT)
        m_v = mrow[:, None] & (cv < tl.where(is_val, V, 0))[None, :]
        dv_chunk, dstate = _bwd_chunk(
            q_ptr, k_ptr, gc_ptr, w_ptr, a_ptr, do_ptr, dstate, th, mrow, cols, mcol, cv, m_v, scale, K, V,
            PER_CHANNEL, SPLIT16, KEY_DECAY, BT,
        )  # fmt: skip
    out_col = tl.where(is_val, cv, V + cv)
    tl.store(sum_ptr + i_bhs.to(tl.int64) * K * (V + K) + cols[:, None] * (V + K) + out_col[None, :], dstate,
             mask=mcol[:, None] & mc[None, :])  # fmt: skip


def segment_starts(
    summary_kernel, summary_args: tuple, h0: torch.Tensor | None, batch_heads: int, key_dim: int, value_dim: int,
    ns: int, cps: int, cfg: dict, meta: dict, reverse: bool, device: torch.device,
) -> torch.Tensor:  # fmt: skip
    """Phases 1 and 2 of the segment-parallel scan: per-segment affine summaries ([B*H*NS, K, V + K] fp32, in
    parallel over segments and column tiles), then the serial combine over segments. Returns the state each
    segment starts from, [B*H*NS, K, V] fp32 (for ``reverse``: the dS leaving each segment's last chunk)."""
    bv = cfg["BV"]
    summary = torch.empty(batch_heads * ns, key_dim, value_dim + key_dim, device=device, dtype=torch.float32)
    starts = torch.empty(batch_heads * ns, key_dim, value_dim, device=device, dtype=torch.float32)
    nvt = cdiv(value_dim, bv)
    grid = (nvt + cdiv(key_dim, bv), batch_heads * ns)
    summary_kernel[grid](
        *summary_args, summary, *meta["scalars"], ns, cps, nvt, **meta["const"], BV=bv,
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )  # fmt: skip
    _seg_combine_kernel[(nvt, batch_heads)](
        summary, h0 if h0 is not None else starts, starts, key_dim, value_dim, ns, HAS_H0=h0 is not None,
        REVERSE=reverse, BK=meta["const"]["BK"], BV=bv, BKC=min(64, meta["const"]["BK"]), num_warps=4, num_stages=1,
    )  # fmt: skip
    return starts
