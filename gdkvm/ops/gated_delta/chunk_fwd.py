"""Triton forward of the chunkwise gated delta rule (token rule): two launches.

1. ``_prep_kernel``, one program per (chunk, batch*head), fully parallel: chunk-local cumulative log-decay G (fp32),
   the decayed key Gram L = strict-lower(beta_i k_i^T diag(e^{G_i - G_j}) k_j), its UT inverse T = (I + L)^-1 (forward
   substitution on 16x16 diagonal blocks in fp32, then a block merge (I - N)(I + N^2) T_diag with N = T_diag L_off),
   w = T diag(beta) (K * e^G), u = T diag(beta) V, and the causal query-key scores A = scale (Q K^T * e^{G_i - G_j}).
2. ``_state_fwd_kernel``, one program per (value tile, batch*head), sequential over chunks with the state S [K, BV] in
   fp32 registers: U = u - w S, o = scale (Q * e^G) S + A U, S <- e^{G_C} S + (K * e^{G_C - G})^T U.
   With ``save`` it also writes S entering each chunk and U for the backward (which then needs no forward replay).

G is never stored: every kernel rebuilds it from g with a chunk-local cumsum. Pairwise decays e^{G_i - G_j} are only
formed for i >= j (masked before exp), so nothing overflows. A per-key-channel gate (KDA) cannot be folded out of the
Gram product; it is computed exactly as a sum over key channels of rank-1 tiles (CUDA cores, slower, any gate).
Stored intermediates (w, u, A, U, per-chunk S) are fp32 by default, or the input dtype with
GDKVM_TOKEN_PRECISION=fast; the kernels take their operand dtype from the buffers they are given.
No ``tl.make_block_ptr``: pointer arithmetic and masks only, so the kernels also run under TRITON_INTERPRET=1.
"""

from __future__ import annotations

import json
import os

import torch
import triton
import triton.language as tl
import triton.testing


def interpreting() -> bool:
    """Whether Triton runs through its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@triton.jit
def _gate_cumsum(g_ptr, th, mrow, cols, mcol, K, PER_CHANNEL: tl.constexpr):
    """Chunk-local cumulative log-decay G ([BT] or [BT, BK], fp32) and its last value G_C ([] or [BK])."""
    if PER_CHANNEL:
        gt = tl.load(g_ptr + th[:, None] * K + cols[None, :], mask=mrow[:, None] & mcol[None, :], other=0.0)
    else:
        gt = tl.load(g_ptr + th, mask=mrow, other=0.0)
    gt = gt.to(tl.float32)
    return tl.cumsum(gt, 0), tl.sum(gt, 0)


@triton.jit
def _rows(x, PER_CHANNEL: tl.constexpr):
    """Broadcasts a per-row gate quantity against a [BT, BK] tile: [BT] -> [BT, 1]; [BT, BK] unchanged."""
    if PER_CHANNEL:
        return x
    else:
        return x[:, None]


@triton.jit
def _vec(x, PER_CHANNEL: tl.constexpr):
    """Broadcasts the chunk-end gate against the rows of a [BK, BV] state: [] stays, [BK] -> [BK, 1]."""
    if PER_CHANNEL:
        return x[:, None]
    else:
        return x


@triton.jit
def _pairwise_channel(q_ptr, k_ptr, g_ptr, th, mrow, K, BT: tl.constexpr):
    """Per-key-channel gate: P_kk[i, j] = k_i^T diag(e^{G_i - G_j}) k_j and P_qk (q_i instead of k_i) for i >= j,
    zero above; [BT, BT] fp32 each. The decay cannot leave the channel sum, so this is an exact sum of rank-1 tiles
    over channels (columns reloaded from memory, G columns rebuilt by cumsum), on CUDA cores."""
    o_i = tl.arange(0, BT)
    causal = o_i[:, None] >= o_i[None, :]
    p_kk = tl.zeros([BT, BT], dtype=tl.float32)
    p_qk = tl.zeros([BT, BT], dtype=tl.float32)
    for c in range(K):
        k_c = tl.load(k_ptr + th * K + c, mask=mrow, other=0.0).to(tl.float32)
        q_c = tl.load(q_ptr + th * K + c, mask=mrow, other=0.0).to(tl.float32)
        g_c = tl.cumsum(tl.load(g_ptr + th * K + c, mask=mrow, other=0.0).to(tl.float32), 0)
        e = tl.exp(tl.where(causal, g_c[:, None] - g_c[None, :], float("-inf")))
        ke = k_c[None, :] * e
        p_kk += k_c[:, None] * ke
        p_qk += q_c[:, None] * ke
    return p_kk, p_qk


@triton.jit
def _solve_unit_lower(lower, t_ptr, tok0, i_h, H, n_valid, BT: tl.constexpr, BS: tl.constexpr, PREC: tl.constexpr):
    """(I + L)^-1 of a strictly lower [BT, BT] fp32 tile L of the chunk whose first token is ``tok0`` (row index into
    [B*T]). The chunk's rows of t_ptr ([B*T, H, BT]) are scratch: L is stored there, each BS x BS diagonal block is
    inverted by forward substitution in fp32, and the blocks are merged with T = (I - N)(I + N^2) T_diag,
    N = T_diag L_off (exact while BT / BS <= 4). The caller stores the result over the scratch."""
    o_i = tl.arange(0, BT)
    o_s = tl.arange(0, BS)
    same = (o_i[:, None] // BS) == (o_i[None, :] // BS)
    m2 = (o_i < n_valid)[:, None] & (o_i[None, :] < BT)
    p_full = t_ptr + ((tok0 + o_i[:, None]) * H + i_h) * BT + o_i[None, :]
    tl.store(p_full, lower, mask=m2)
    tl.debug_barrier()
    # All NB = BT / BS diagonal blocks are solved together as one [NB, BS, BS] tile (15 steps, not 60).
    NB: tl.constexpr = BT // BS
    o_b = tl.arange(0, NB)
    row_b = tok0 + o_b * BS  # first token of each block, [NB]
    eye = tl.where(o_s[:, None] == o_s[None, :], 1.0, 0.0)
    t_b = tl.zeros([NB, BS, BS], dtype=tl.float32)
    for r in range(1, BS):
        p_row = t_ptr + ((row_b[:, None] + r) * H + i_h) * BT + o_b[:, None] * BS + o_s[None, :]
        m_row = (o_s[None, :] < r) & ((o_b[:, None] * BS + r) < n_valid)
        a = tl.load(p_row, mask=m_row, other=0.0).to(tl.float32)  # row r of each block's L, [NB, BS]
        new = -tl.sum(a[:, :, None] * (t_b + eye[None, :, :]), 1)
        t_b = tl.where((o_s == r)[None, :, None], new[:, None, :], t_b)
    t_b += eye[None, :, :]
    tl.debug_barrier()
    p_blk = t_ptr + ((row_b[:, None, None] + o_s[None, :, None]) * H + i_h) * BT + o_b[:, None, None] * BS
    m_blk = ((o_b[:, None, None] * BS + o_s[None, :, None]) < n_valid) & (o_s[None, None, :] < BS)
    tl.store(p_blk + o_s[None, None, :], t_b, mask=m_blk)
    # The [NB, BS, BS] store and the [BT, BT] reload below map elements to different threads (other warps): without
    # this barrier a warp can read a diagonal block before the warp that owns it has written T_diag there, and gets
    # the stale L block (a GPU-only race; the interpreter runs the program serially).
    tl.debug_barrier()
    # Diagonal blocks now hold T_diag, the others still hold L: reload instead of keeping L live in registers.
    t_full = tl.load(p_full, mask=m2, other=0.0).to(tl.float32)
    t_diag = tl.where(same, t_full, 0.0)
    if BT > BS:
        n = tl.dot(t_diag, tl.where(same, 0.0, t_full), input_precision=PREC)
        m = t_diag + tl.dot(tl.dot(n, n, input_precision=PREC), t_diag, input_precision=PREC)
        t_inv = m - tl.dot(n, m, input_precision=PREC)
    else:
        t_inv = t_diag
    tl.debug_barrier()
    return t_inv


@triton.jit
def _prep_kernel(
    q_ptr, k_ptr, v_ptr, g_ptr, beta_ptr, t_ptr, a_ptr, w_ptr, u_ptr, scale, T, H, K, V,
    PER_CHANNEL: tl.constexpr, BT: tl.constexpr, BS: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PREC: tl.constexpr,
):  # fmt: skip
    """Per chunk: G, L, T = (I + L)^-1 (fp32, kept for the backward); A, w and u in the dtype of their buffers (the
    intermediate dtype, see ``intermediate_dtype``)."""
    i_t = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H
    tok0 = i_b.to(tl.int64) * T + i_t * BT
    n_valid = T - i_t * BT
    o_i = tl.arange(0, BT)
    cols = tl.arange(0, BK)
    mrow = o_i < n_valid
    mcol = cols < K
    th = (tok0 + o_i) * H + i_h
    m_k = mrow[:, None] & mcol[None, :]
    m_t = mrow[:, None] & (o_i[None, :] < BT)
    p_t = th[:, None] * BT + o_i[None, :]
    kt = tl.load(k_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
    bt = tl.load(beta_ptr + th, mask=mrow, other=0.0).to(tl.float32)
    G, _ = _gate_cumsum(g_ptr, th, mrow, cols, mcol, K, PER_CHANNEL)
    if PER_CHANNEL:
        p_kk, p_qk = _pairwise_channel(q_ptr, k_ptr, g_ptr, th, mrow, K, BT)
        tl.store(a_ptr + p_t, (scale * p_qk).to(a_ptr.dtype.element_ty), mask=m_t)
    else:
        decay = tl.exp(tl.where(o_i[:, None] >= o_i[None, :], G[:, None] - G[None, :], float("-inf")))
        qt = tl.load(q_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
        tl.store(a_ptr + p_t, (tl.dot(qt, tl.trans(kt)) * decay * scale).to(a_ptr.dtype.element_ty), mask=m_t)
        p_kk = tl.dot(kt, tl.trans(kt)) * decay
    lower = tl.where(o_i[:, None] > o_i[None, :], bt[:, None] * p_kk, 0.0)
    t_inv = _solve_unit_lower(lower, t_ptr, tok0, i_h, H, n_valid, BT, BS, PREC)
    tl.store(t_ptr + p_t, t_inv, mask=m_t)
    idt = w_ptr.dtype.element_ty  # operand dtype of the intermediates (see intermediate_dtype)
    t_dt = t_inv.to(idt)
    kb = (kt.to(tl.float32) * tl.exp(_rows(G, PER_CHANNEL)) * bt[:, None]).to(idt)
    tl.store(w_ptr + th[:, None] * K + cols[None, :], tl.dot(t_dt, kb).to(idt), mask=m_k)
    for i_v in range(tl.cdiv(V, BV)):
        cv = i_v * BV + tl.arange(0, BV)
        m_v = mrow[:, None] & (cv < V)[None, :]
        vt = tl.load(v_ptr + th[:, None] * V + cv[None, :], mask=m_v, other=0.0).to(tl.float32)
        tl.store(u_ptr + th[:, None] * V + cv[None, :], tl.dot(t_dt, (vt * bt[:, None]).to(idt)).to(idt), mask=m_v)


@triton.jit
def _state_fwd_kernel(
    q_ptr, k_ptr, g_ptr, w_ptr, u_ptr, a_ptr, h0_ptr, o_ptr, ht_ptr, hs_ptr, us_ptr, scale, T, H, K, V, NT, NS, CPS,
    PER_CHANNEL: tl.constexpr, HAS_H0: tl.constexpr, STORE_HT: tl.constexpr, SAVE: tl.constexpr,
    EMIT_O: tl.constexpr, SEG: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):  # fmt: skip
    """Sequential over chunks for one (value tile, batch*head, segment): o (EMIT_O), the final state and (SAVE)
    per-chunk states/U. With SEG the chunks [i_s * CPS, (i_s + 1) * CPS) of segment i_s start from the state that
    ``_seg_combine_kernel`` stored in h0_ptr ([B*H*NS, K, V] fp32); otherwise NS = 1 and h0_ptr is [B*H, K, V]."""
    i_v = tl.program_id(0)
    i_bhs = tl.program_id(1)
    i_bh = i_bhs // NS
    i_s = i_bhs % NS
    i_b = i_bh // H
    i_h = i_bh % H
    dt = w_ptr.dtype.element_ty  # operand dtype of the tensor-core products
    cols = tl.arange(0, BK)
    cv = i_v * BV + tl.arange(0, BV)
    o_i = tl.arange(0, BT)
    mcol = cols < K
    m_s = mcol[:, None] & (cv < V)[None, :]
    p_s = cols[:, None] * V + cv[None, :]
    if SEG or HAS_H0:
        state = tl.load(h0_ptr + i_bhs.to(tl.int64) * K * V + p_s, mask=m_s, other=0.0).to(tl.float32)
    else:
        state = tl.zeros([BK, BV], dtype=tl.float32)
    c_end = tl.minimum(NT, (i_s + 1) * CPS)
    for i_t in range(i_s * CPS, c_end):
        tok0 = i_b.to(tl.int64) * T + i_t * BT
        mrow = o_i < T - i_t * BT
        th = (tok0 + o_i) * H + i_h
        m_k = mrow[:, None] & mcol[None, :]
        m_v = mrow[:, None] & (cv < V)[None, :]
        if SAVE:
            chunk_bh = (i_b.to(tl.int64) * NT + i_t) * H + i_h
            tl.store(hs_ptr + chunk_bh * K * V + p_s, state.to(hs_ptr.dtype.element_ty), mask=m_s)
        kt = tl.load(k_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
        wt = tl.load(w_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
        ut = tl.load(u_ptr + th[:, None] * V + cv[None, :], mask=m_v, other=0.0).to(tl.float32)
        G, G_last = _gate_cumsum(g_ptr, th, mrow, cols, mcol, K, PER_CHANNEL)
        s_dt = state.to(dt)
        pseudo = ut - tl.dot(wt, s_dt)
        if SAVE:
            tl.store(us_ptr + th[:, None] * V + cv[None, :], pseudo.to(us_ptr.dtype.element_ty), mask=m_v)
        p_dt = pseudo.to(dt)
        if EMIT_O:
            qt = tl.load(q_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
            at = tl.load(a_ptr + th[:, None] * BT + o_i[None, :], mask=mrow[:, None], other=0.0)
            qe = (qt * (tl.exp(_rows(G, PER_CHANNEL)) * scale)).to(dt)
            ot = tl.dot(qe, s_dt) + tl.dot(at, p_dt)
            tl.store(o_ptr + th[:, None] * V + cv[None, :], ot.to(o_ptr.dtype.element_ty), mask=m_v)
        kbar = (kt * tl.exp(_rows(G_last - G, PER_CHANNEL))).to(dt)
        state = state * tl.exp(_vec(G_last, PER_CHANNEL)) + tl.dot(tl.trans(kbar), p_dt)
    if STORE_HT:
        if i_s == NS - 1:
            tl.store(ht_ptr + i_bh.to(tl.int64) * K * V + p_s, state, mask=m_s)


@triton.jit
def _seg_fwd_kernel(
    k_ptr, g_ptr, w_ptr, u_ptr, sum_ptr, T, H, K, V, NT, NS, CPS, NVT,
    PER_CHANNEL: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):  # fmt: skip
    """Segment summary (segment-parallel forward, phase 1): over the chunks of segment i_s the state map is affine,
    S_end = M S_start + b. Column tiles i_c < NVT run the recurrence from S = 0 with the chunk's u (giving b, the V
    value columns); the others run it from S = I with u = 0 (giving M, K columns). sum_ptr: [B*H*NS, K, V + K]."""
    i_c = tl.program_id(0)
    i_bhs = tl.program_id(1)
    i_bh = i_bhs // NS
    i_s = i_bhs % NS
    i_b = i_bh // H
    i_h = i_bh % H
    dt = w_ptr.dtype.element_ty
    cols = tl.arange(0, BK)
    o_i = tl.arange(0, BT)
    mcol = cols < K
    is_val = i_c < NVT
    c0 = tl.where(is_val, i_c * BV, (i_c - NVT) * BV)
    cv = c0 + tl.arange(0, BV)
    width = tl.where(is_val, V, K)
    mc = cv < width
    state = tl.where((cols[:, None] == cv[None, :]) & (cv < tl.where(is_val, 0, K))[None, :], 1.0, 0.0)
    c_end = tl.minimum(NT, (i_s + 1) * CPS)
    for i_t in range(i_s * CPS, c_end):
        tok0 = i_b.to(tl.int64) * T + i_t * BT
        mrow = o_i < T - i_t * BT
        th = (tok0 + o_i) * H + i_h
        m_k = mrow[:, None] & mcol[None, :]
        m_v = mrow[:, None] & (cv < tl.where(is_val, V, 0))[None, :]
        kt = tl.load(k_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
        wt = tl.load(w_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
        ut = tl.load(u_ptr + th[:, None] * V + cv[None, :], mask=m_v, other=0.0).to(tl.float32)
        G, G_last = _gate_cumsum(g_ptr, th, mrow, cols, mcol, K, PER_CHANNEL)
        p_dt = (ut - tl.dot(wt, state.to(dt))).to(dt)
        kbar = (kt * tl.exp(_rows(G_last - G, PER_CHANNEL))).to(dt)
        state = state * tl.exp(_vec(G_last, PER_CHANNEL)) + tl.dot(tl.trans(kbar), p_dt)
    out_col = tl.where(is_val, cv, V + cv)
    tl.store(sum_ptr + i_bhs.to(tl.int64) * K * (V + K) + cols[:, None] * (V + K) + out_col[None, :], state,
             mask=mcol[:, None] & mc[None, :])  # fmt: skip


@triton.jit
def _seg_combine_kernel(
    sum_ptr, h0_ptr, start_ptr, K, V, NS,
    HAS_H0: tl.constexpr, REVERSE: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
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
    m_m = mcol[:, None] & mcol[None, :]
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
        tl.store(start_ptr + (i_bh.to(tl.int64) * NS + i_s) * K * V + p_s, state, mask=m_s)
        b = tl.load(sum_ptr + base + cols[:, None] * (V + K) + cv[None, :], mask=m_s, other=0.0)
        m = tl.load(sum_ptr + base + cols[:, None] * (V + K) + V + cols[None, :], mask=m_m, other=0.0)
        state = tl.dot(m, state, input_precision="ieee") + b


@triton.jit
def _output_kernel(
    q_ptr, g_ptr, a_ptr, hs_ptr, us_ptr, o_ptr, scale, T, H, K, V, NT,
    PER_CHANNEL: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):  # fmt: skip
    """o = scale (Q * e^G) S + A U for one (chunk, batch*head, value tile), from the state entering the chunk and U
    stored by the state pass (split output mode): fully parallel, off the sequential chain."""
    i_t = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_v = tl.program_id(2)
    i_b = i_bh // H
    i_h = i_bh % H
    dt = hs_ptr.dtype.element_ty
    tok0 = i_b.to(tl.int64) * T + i_t * BT
    o_i = tl.arange(0, BT)
    cols = tl.arange(0, BK)
    cv = i_v * BV + tl.arange(0, BV)
    mrow = o_i < T - i_t * BT
    mcol = cols < K
    th = (tok0 + o_i) * H + i_h
    m_k = mrow[:, None] & mcol[None, :]
    m_v = mrow[:, None] & (cv < V)[None, :]
    chunk_bh = (i_b.to(tl.int64) * NT + i_t) * H + i_h
    s_t = tl.load(hs_ptr + chunk_bh * K * V + cols[:, None] * V + cv[None, :], mask=mcol[:, None] & (cv < V)[None, :],
                  other=0.0)  # fmt: skip
    u_t = tl.load(us_ptr + th[:, None] * V + cv[None, :], mask=m_v, other=0.0)
    qt = tl.load(q_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
    at = tl.load(a_ptr + th[:, None] * BT + o_i[None, :], mask=mrow[:, None], other=0.0)
    G, _ = _gate_cumsum(g_ptr, th, mrow, cols, mcol, K, PER_CHANNEL)
    qe = (qt * (tl.exp(_rows(G, PER_CHANNEL)) * scale)).to(dt)
    ot = tl.dot(qe, s_t.to(dt)) + tl.dot(at.to(dt), u_t.to(dt))
    tl.store(o_ptr + th[:, None] * V + cv[None, :], ot.to(o_ptr.dtype.element_ty), mask=m_v)


# Launch configurations. On a GPU the autotuner picks among these (pruned to what fits an H100's 227 KB of shared
# memory per block, see ``_prune``); with GDKVM_AUTOTUNE=0 or under the interpreter ``heuristic`` picks one. BV trades
# parallelism (B*H*V/BV programs on 132 SMs) against work per sequential step. Shared memory measured by compiling
# for sm_90 (triton 3.9, bf16 inputs, fp32 intermediates): state kernels 82 KB (K 64, BV 16), 127 KB (K 128, BV 16),
# 180 KB (K 128, BV 64), 82-107 KB (K 256, chunk 32, BV 32); prep 37-49 KB; chunk backward 90 KB (K 64), 156 KB
# (K 128), 98 KB (K 256, chunk 32).
STATE_CONFIGS = [
    triton.Config({"BV": bv}, num_warps=warps, num_stages=stages)
    for bv, warps, stages in ((16, 4, 2), (32, 4, 2), (64, 4, 2), (16, 4, 1))
]  # 4 warps only: the 8-warp variants gained nothing on the sequential passes and are a miscompile suspect
PARALLEL_CONFIGS = [triton.Config({}, num_warps=warps) for warps in (4, 8)]
_TUNED: dict[str, object] = {}


def _state_bv_cap(key_dim: int) -> int:
    """Widest value tile of the state kernels for a key dimension: the [K, BV] fp32 state lives in registers and the
    [K, BV] operand tiles in shared memory, so BV shrinks as K grows."""
    return 64 if key_dim <= 128 else 32


def _prune(configs: list, named_args: dict, **kwargs: object) -> list:
    """Drops value tiles wider than V needs or than K allows, and 8 warps at K > 128 (register pressure)."""
    value_dim, key_dim = int(named_args["V"]), int(named_args["K"])
    widest = min(_state_bv_cap(key_dim), max(16, triton.next_power_of_2(value_dim)))
    kept = [c for c in configs if c.kwargs.get("BV", 0) <= widest and (key_dim <= 128 or c.num_warps <= 4)]
    return kept or configs[:1]


def autotuning() -> bool:
    """Autotune on a GPU only with GDKVM_AUTOTUNE=1; by default ``heuristic`` picks the configuration. (Off by
    default since one autotune candidate of the state pass hit an illegal memory access on an H100 with triton 3.6,
    2026-11-27; the heuristic configurations pass every GPU test and bench check.)"""
    return not interpreting() and os.environ.get("GDKVM_AUTOTUNE", "0") == "1"


def _quick_bench(fn, quantiles=None, **kwargs: object):
    """The autotuner's timer: short windows (5 ms warm-up, 25 ms), enough to rank a handful of configurations."""
    return triton.testing.do_bench(fn, warmup=5, rep=25, quantiles=quantiles)


def tuned(kernel, name: str, configs: list, state_kernel: bool):
    """The autotuned wrapper of ``kernel`` (built once, on first use, so importing compiles nothing)."""
    if name not in _TUNED:
        prune = {"early_config_prune": _prune} if state_kernel else None
        _TUNED[name] = triton.autotune(
            configs=configs, key=["H", "K", "V", "T"], prune_configs_by=prune, do_bench=_quick_bench
        )(kernel)
    return _TUNED[name]


def intermediate_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of the stored intermediates (w, u, A, U, per-chunk states) and of the tensor-core operands built from
    them. fp32 (TF32 products) by default: bf16 intermediates alone cost about 3-5e-3 relative RMS on o (measured by
    simulation), too close to the 5e-3 test bound. ``GDKVM_TOKEN_PRECISION=fast`` keeps them in the input dtype
    (FLA's choice: half the intermediate traffic, bf16 tensor cores)."""
    if os.environ.get("GDKVM_TOKEN_PRECISION", "high") == "fast":
        return dtype
    return torch.float32


def prec(dtype: torch.dtype) -> str:
    """Input precision of fp32 tl.dot operands: IEEE for fp32 inputs, TF32 for 16-bit inputs (as FLA's solve)."""
    return "ieee" if dtype == torch.float32 else "tf32"


def heuristic(kernel: str, key_dim: int, value_dim: int, batch_heads: int) -> dict[str, int]:
    """The launch configuration of ``_heuristic``, with ``GDKVM_TOKEN_CONFIG`` applied (read per call): a JSON object
    such as ``{"prep": {"num_warps": 4}}`` overriding fields per kernel, for measuring alternatives
    (bench/token_configs.py)."""
    cfg = _heuristic(kernel, key_dim, value_dim, batch_heads)
    raw = os.environ.get("GDKVM_TOKEN_CONFIG")
    if raw:
        try:
            override = json.loads(raw).get(kernel, {})
        except (ValueError, AttributeError) as err:
            raise ValueError(f"GDKVM_TOKEN_CONFIG must be a JSON object of per-kernel objects, got {raw!r}") from err
        cfg.update({name: int(value) for name, value in override.items() if name in cfg})
    return cfg


def _heuristic(kernel: str, key_dim: int, value_dim: int, batch_heads: int) -> dict[str, int]:
    """Launch configuration without autotuning: {"BV", "num_warps", "num_stages"} for kernel "prep", "state" (the
    forward sequential pass), "state_bwd" (the backward one) or "chunk_bwd". BK always covers K whole (K <= 256).

    Measured on an H100 (triton 3.6, bf16, bench/token_configs.py, 2026-11-27; every candidate gave the same o and
    gradients): the state passes use 4 warps and split V finer while batch*heads alone gives too few programs to fill
    132 SMs, down to BV 16 (K <= 64) or 32 (K 128; 0.234 vs 0.355 ms forward, 0.429 vs 0.759 ms backward at B4 T2560
    H8 K128 V128); the backward pass is fastest unpipelined (1 stage: 0.690 vs 1.023 ms at B4 T10240 H8 K64 V64).
    The prep kernel runs 4 warps up to K 128 (0.432 vs 0.887 ms with 8 at B4 T10240 K64, 0.167 vs 0.279 at K128);
    the chunk backward 8 (4 spill heavily on sm_90)."""
    bk = max(16, triton.next_power_of_2(key_dim))
    widest = max(16, triton.next_power_of_2(value_dim))
    pipelined = 1 if interpreting() else None
    if kernel in ("state", "state_bwd"):
        k128 = 64 < key_dim <= 128
        bv, narrowest = min(_state_bv_cap(key_dim), widest), 32 if k128 else 16
        while bv > narrowest and batch_heads * triton.cdiv(value_dim, bv) < 132:
            bv //= 2
        stages = 1 if kernel == "state_bwd" or k128 else 2
        return {"BV": bv, "num_warps": 4, "num_stages": pipelined or stages}
    if kernel == "prep":
        return {
            "BV": min(64 if bk <= 128 else 32, widest),
            "num_warps": 4 if bk <= 128 else 8,
            "num_stages": pipelined or 3,
        }
    if kernel == "chunk_bwd":
        return {"BV": min(32, widest), "num_warps": 8, "num_stages": pipelined or 3}
    raise ValueError(f"unknown kernel {kernel!r}")


def block_k(key_dim: int) -> int:
    """Key tile: K whole, padded to a power of two (at least 16, the smallest tl.dot dimension)."""
    return max(16, triton.next_power_of_2(key_dim))


def launch_prep(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float,
    chunk_size: int = 64,
) -> dict[str, torch.Tensor]:
    """Launch 1 (parallel over chunks): t_inv [B, T, H, C] fp32, a [B, T, H, C], w [B, T, H, K], u [B, T, H, V] in the
    intermediate dtype. Inputs contiguous; g fp32 [B, T, H] or [B, T, H, K]."""
    batch, length, heads, key_dim = k.shape
    value_dim = v.shape[-1]
    n_chunks = triton.cdiv(length, chunk_size)
    inter = intermediate_dtype(q.dtype)
    t_inv = torch.empty(batch, length, heads, chunk_size, device=q.device, dtype=torch.float32)
    a = torch.empty(batch, length, heads, chunk_size, device=q.device, dtype=inter)
    w = torch.empty(k.shape, device=q.device, dtype=inter)
    u = torch.empty(v.shape, device=q.device, dtype=inter)
    cfg = heuristic("prep", key_dim, value_dim, batch * heads)
    meta = dict(
        PER_CHANNEL=g.dim() == 4, BT=chunk_size, BS=min(16, chunk_size), BK=block_k(key_dim), BV=cfg["BV"],
        PREC=prec(q.dtype),
    )  # fmt: skip
    args = (q, k, v, g, beta, t_inv, a, w, u, scale, length, heads, key_dim, value_dim)
    grid = (n_chunks, batch * heads)
    if autotuning():
        tuned(_prep_kernel, "prep", PARALLEL_CONFIGS, False)[grid](*args, **meta)
    else:
        _prep_kernel[grid](*args, **meta, num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    return {"t_inv": t_inv, "a": a, "w": w, "u": u}


def output_mode() -> str:
    """``GDKVM_TOKEN_O`` (read per call): "fused" (default) emits o inside the sequential state pass; "split" keeps
    only U and S on the sequential chain and computes o in the fully parallel ``_output_kernel`` from the stored
    per-chunk states."""
    mode = os.environ.get("GDKVM_TOKEN_O", "fused")
    if mode not in ("fused", "split"):
        raise ValueError(f"GDKVM_TOKEN_O must be 'fused' or 'split', got {mode!r}")
    return mode


def n_segments(n_chunks: int, programs: int) -> int:
    """Number of time segments the sequential passes are cut into (segment-parallel scan), from
    ``GDKVM_TOKEN_SEGMENTS`` (read per call): "auto" (default), "1" (one serial walk over all chunks) or an integer.
    Segments cost about (2 + K / V) times the serial work, so "auto" uses them only when the plain pass has at most
    a quarter of the ~264 programs an H100 runs at once (few batch*heads, long T): then about 264 / programs
    segments of at least 4 chunks. On an H100 (2026-11-27) "auto" halved B1 T25600 H8 K64 V32 (forward 1.58 ->
    0.81 ms, forward + backward 4.60 -> 2.41 ms) and was neutral or slightly faster at the other benchmark shapes."""
    raw = os.environ.get("GDKVM_TOKEN_SEGMENTS", "auto")
    if raw == "auto":
        if programs * 4 > 264:
            return 1
        want = 264 // max(1, programs)
    else:
        want = int(raw)
    return max(1, min(want, n_chunks // 4 if raw == "auto" else n_chunks))


def _segment_plan(
    n_chunks: int, batch_heads: int, key_dim: int, value_dim: int, kernel: str = "state"
) -> tuple[int, int, dict]:
    """(NS, chunks per segment, heuristic config of ``kernel``, "state" or "state_bwd"); NS = 1: the plain serial
    pass."""
    cfg = heuristic(kernel, key_dim, value_dim, batch_heads)
    ns = n_segments(n_chunks, batch_heads * triton.cdiv(value_dim, cfg["BV"]))
    cps = triton.cdiv(n_chunks, ns)
    return triton.cdiv(n_chunks, cps), cps, cfg


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
    nvt = triton.cdiv(value_dim, bv)
    grid = (nvt + triton.cdiv(key_dim, bv), batch_heads * ns)
    summary_kernel[grid](
        *summary_args, summary, *meta["scalars"], ns, cps, nvt, **meta["const"], BV=bv,
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )  # fmt: skip
    _seg_combine_kernel[(nvt, batch_heads)](
        summary, h0 if h0 is not None else starts, starts, key_dim, value_dim, ns, HAS_H0=h0 is not None,
        REVERSE=reverse, BK=meta["const"]["BK"], BV=bv, num_warps=4,
    )  # fmt: skip
    return starts


def launch_output(
    q: torch.Tensor, g: torch.Tensor, a: torch.Tensor, states: torch.Tensor, pseudo: torch.Tensor, o: torch.Tensor,
    scale: float, chunk_size: int,
) -> None:  # fmt: skip
    """The split output mode's o kernel (parallel over chunks, batch*heads and value tiles)."""
    batch, length, heads, key_dim = q.shape
    value_dim = o.shape[-1]
    n_chunks = triton.cdiv(length, chunk_size)
    bk = block_k(key_dim)
    bv = min(64 if bk <= 128 else 32, max(16, triton.next_power_of_2(value_dim)))
    _output_kernel[(n_chunks, batch * heads, triton.cdiv(value_dim, bv))](
        q, g, a, states, pseudo, o, scale, length, heads, key_dim, value_dim, n_chunks,
        PER_CHANNEL=g.dim() == 4, BT=chunk_size, BK=bk, BV=bv, num_warps=4,
        num_stages=1 if interpreting() else 2,
    )  # fmt: skip


def launch_state_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    g: torch.Tensor,
    prep: dict[str, torch.Tensor],
    value_dim: int,
    scale: float,
    initial_state: torch.Tensor | None,
    output_final_state: bool,
    save: bool,
    chunk_size: int = 64,
) -> dict[str, torch.Tensor | None]:
    """Launch 2 (sequential over chunks): o [B, T, H, V] (dtype of q), the final state [B, H, K, V] fp32 (or None) and,
    with ``save``, the states entering each chunk [B, NT, H, K, V] and U [B, T, H, V] (intermediate dtype).
    ``GDKVM_TOKEN_O=split`` moves o to a parallel kernel; ``GDKVM_TOKEN_SEGMENTS`` cuts the chunks into segments
    scanned in parallel (see ``n_segments``); both are off by default."""
    batch, length, heads, key_dim = k.shape
    n_chunks = triton.cdiv(length, chunk_size)
    w, u, a = prep["w"], prep["u"], prep["a"]
    split_o = output_mode() == "split"
    keep = save or split_o
    o = torch.empty(batch, length, heads, value_dim, device=q.device, dtype=q.dtype)
    final = torch.empty(batch, heads, key_dim, value_dim, device=q.device, dtype=torch.float32)
    states = torch.empty(batch, n_chunks, heads, key_dim, value_dim, device=q.device, dtype=w.dtype) if keep else None
    pseudo = torch.empty(batch, length, heads, value_dim, device=q.device, dtype=w.dtype) if keep else None
    const = dict(PER_CHANNEL=g.dim() == 4, BT=chunk_size, BK=block_k(key_dim))
    ns, cps, cfg = _segment_plan(n_chunks, batch * heads, key_dim, value_dim)
    h0 = initial_state
    if ns > 1:
        meta = {"scalars": (length, heads, key_dim, value_dim, n_chunks), "const": const}
        h0 = segment_starts(
            _seg_fwd_kernel, (k, g, w, u), initial_state, batch * heads, key_dim, value_dim, ns, cps, cfg, meta,
            False, q.device,
        )  # fmt: skip
    args = (
        q, k, g, w, u, a, h0 if h0 is not None else final, o, final,
        states if keep else o, pseudo if keep else o, scale, length, heads, key_dim, value_dim, n_chunks, ns, cps,
    )  # fmt: skip
    meta = dict(
        **const, HAS_H0=initial_state is not None, STORE_HT=output_final_state, SAVE=keep, EMIT_O=not split_o,
        SEG=ns > 1,
    )  # fmt: skip
    if autotuning() and ns == 1:
        grid = lambda m: (triton.cdiv(value_dim, m["BV"]), batch * heads)  # noqa: E731
        tuned(_state_fwd_kernel, "state_fwd", STATE_CONFIGS, True)[grid](*args, **meta)
    else:
        _state_fwd_kernel[(triton.cdiv(value_dim, cfg["BV"]), batch * heads * ns)](
            *args, **meta, BV=cfg["BV"], num_warps=cfg["num_warps"], num_stages=cfg["num_stages"]
        )
    if split_o:
        launch_output(q, g, a, states, pseudo, o, scale, chunk_size)
    if not save:
        states = pseudo = None
    return {"o": o, "final_state": final if output_final_state else None, "states": states, "pseudo": pseudo}


def chunk_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float,
    initial_state: torch.Tensor | None,
    output_final_state: bool,
    save: bool,
    chunk_size: int = 64,
) -> dict[str, torch.Tensor | None]:
    """Runs the forward kernels on contiguous inputs.

    Args:
        q, k: [B, T, H, K]; v: [B, T, H, V] (one float dtype); g: [B, T, H] or [B, T, H, K] fp32; beta: [B, T, H].
        scale: query scale.
        initial_state: [B, H, K, V] fp32 or None.
        output_final_state: whether to return the final state.
        save: whether to keep what the backward needs (per-chunk states [B, NT, H, K, V] and U [B, T, H, V]).
        chunk_size: C in {16, 32, 64}.

    Returns:
        dict with o [B, T, H, V] (dtype of q), final_state [B, H, K, V] fp32 or None, and the saved tensors
        t_inv [B, T, H, C] fp32, a [B, T, H, C], w [B, T, H, K], states, pseudo (None unless ``save``).
    """
    prep = launch_prep(q, k, v, g, beta, scale, chunk_size)
    out = launch_state_fwd(q, k, g, prep, v.shape[-1], scale, initial_state, output_final_state, save, chunk_size)
    return {**out, "t_inv": prep["t_inv"], "a": prep["a"], "w": prep["w"]}
