"""Triton helpers shared by the token-rule kernels (forward, backward and segment scan): program and row indexing,
the reverse pass's chunk step, segment-summary columns, the loads of the chunk-local cumulative log-decay G, the gate
shape adapters (per head [BT] or per key channel [BT, BK]), and the per-key-channel pairwise decayed products. All
``@triton.jit``; they run inside the kernels that call them.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _program_bh_segment(NS, H):
    """(i_bhs, i_bh, i_s, i_b, i_h) of a state-pass program whose second grid axis runs over batch*head*segment."""
    i_bhs = tl.program_id(1)
    i_bh = i_bhs // NS
    return i_bhs, i_bh, i_bhs % NS, i_bh // H, i_bh % H


@triton.jit
def _chunk_rows(i_b, i_t, i_h, T, H, BT: tl.constexpr):
    """Row indices th ([BT], into the [B, T, H] token-head layout) and the valid-row mask of chunk i_t."""
    o_i = tl.arange(0, BT)
    return (i_b.to(tl.int64) * T + i_t * BT + o_i) * H + i_h, o_i < T - i_t * BT


@triton.jit
def _dot_hilo(a, b):
    """a [M, N] (bf16, exact) times b [N, P] fp32 on bf16 tensor cores: b = hi + lo, both bf16, and the two products
    summed in fp32, which keeps about 16 bits of b's mantissa (TF32 keeps 10) for the instruction count of one TF32
    product, and lets a feed the tensor cores straight from shared memory in either orientation (TF32 operands must
    be K-major, so a transposed 16-bit tile would first pass through registers)."""
    hi = b.to(a.dtype)
    return tl.dot(a, hi) + tl.dot(a, (b - hi.to(tl.float32)).to(a.dtype))


@triton.jit
def _state_update(
    kt, pseudo, state, G, G_last, DT: tl.constexpr, PER_CHANNEL: tl.constexpr, SPLIT16: tl.constexpr,
    KEY_DECAY: tl.constexpr,
):  # fmt: skip
    """S' = e^{G_C} S + (K * e^{G_C - G})^T U for one chunk: kt [BT, BK] as loaded, pseudo U [BT, BV] fp32, state S
    [BK, BV] fp32; products in DT (the intermediates' dtype). A per-head gate scales the rows of U instead of K
    (unless KEY_DECAY, see ``launch.key_decay``), so K^T reaches the tensor cores as loaded (with SPLIT16, bf16
    inputs and fp32 intermediates, by ``_dot_hilo``)."""
    if PER_CHANNEL or KEY_DECAY:
        kbar = (kt * tl.exp(_rows(G_last - G, PER_CHANNEL))).to(DT)
        return state * tl.exp(_vec(G_last, PER_CHANNEL)) + tl.dot(tl.trans(kbar), pseudo.to(DT))
    else:
        p_dec = pseudo * tl.exp(G_last - G)[:, None]
        if SPLIT16:
            return state * tl.exp(G_last) + _dot_hilo(tl.trans(kt), p_dec)
        else:
            return state * tl.exp(G_last) + tl.dot(tl.trans(kt.to(DT)), p_dec.to(DT))


@triton.jit
def _bwd_chunk(
    q_ptr, k_ptr, gc_ptr, w_ptr, a_ptr, do_ptr, dstate, th, mrow, cols, mcol, cv, m_v, scale, K, V,
    PER_CHANNEL: tl.constexpr, SPLIT16: tl.constexpr, KEY_DECAY: tl.constexpr, BT: tl.constexpr,
):  # fmt: skip
    """One chunk of the reverse state pass: dU = A^T dO + (K * e^{G_C - G}) dS, then
    dS <- e^{G_C} dS + scale (Q * e^G)^T dO - w^T dU. Returns (dU [BT, BV] fp32, new dS [BK, BV] fp32).

    With a per-head gate (and not KEY_DECAY) the decays scale the [BT, BV] side (K dS is formed first and its rows
    scaled; Q^T takes dO with scaled rows), so K and Q^T reach the tensor cores as loaded; SPLIT16 (bf16 inputs, fp32
    intermediates) multiplies them by fp32 tiles with ``_dot_hilo``. A^T, w^T and Q^T are loaded transposed rather
    than transposed with ``tl.trans`` (tried on an H200 as a cause of fast mode's diverging dS: it was not)."""
    dt = w_ptr.dtype.element_ty  # operand dtype of the tensor-core products
    o_i = tl.arange(0, BT)
    m_k = mrow[:, None] & mcol[None, :]
    m_kt = mcol[:, None] & mrow[None, :]
    kt = tl.load(k_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
    q_tr = tl.load(q_ptr + th[None, :] * K + cols[:, None], mask=m_kt, other=0.0)  # [BK, BT]
    w_tr = tl.load(w_ptr + th[None, :] * K + cols[:, None], mask=m_kt, other=0.0)  # [BK, BT]
    a_tr = tl.load(a_ptr + th[None, :] * BT + o_i[:, None], mask=mrow[None, :], other=0.0)  # [BT, BT]: A^T
    do_f = tl.load(do_ptr + th[:, None] * V + cv[None, :], mask=m_v, other=0.0).to(tl.float32)
    dot_ = do_f.to(dt)
    G, G_last = _gate_load(gc_ptr, th, mrow, cols, mcol, K, PER_CHANNEL)
    if PER_CHANNEL or KEY_DECAY:
        kbar = (kt * tl.exp(_rows(G_last - G, PER_CHANNEL))).to(dt)
        dpseudo = tl.dot(a_tr, dot_) + tl.dot(kbar, dstate.to(dt))
        qe_tr = (q_tr * (tl.exp(_cols(gc_ptr, th, mrow, cols, mcol, K, G, G_last, PER_CHANNEL)) * scale)).to(dt)
        dstate = dstate * tl.exp(_vec(G_last, PER_CHANNEL)) + tl.dot(qe_tr, dot_)
    else:
        do_e = do_f * (tl.exp(G) * scale)[:, None]
        if SPLIT16:
            k_ds = _dot_hilo(kt, dstate)
            q_do = _dot_hilo(q_tr, do_e)
        else:
            k_ds = tl.dot(kt.to(dt), dstate.to(dt))
            q_do = tl.dot(q_tr.to(dt), do_e.to(dt))
        dpseudo = tl.dot(a_tr, dot_) + k_ds * tl.exp(G_last - G)[:, None]
        dstate = dstate * tl.exp(G_last) + q_do
    dstate -= tl.dot(w_tr, dpseudo.to(dt))
    return dpseudo, dstate


@triton.jit
def _cols(gc_ptr, th, mrow, cols, mcol, K, G, G_last, PER_CHANNEL: tl.constexpr):
    """G of ``_gate_load`` laid out against a transposed [BK, BT] tile: [BT] -> [1, BT]; per key channel the
    [BK, BT] tile, loaded transposed (rows past the end hold G_C)."""
    if PER_CHANNEL:
        gt = tl.load(gc_ptr + th[None, :] * K + cols[:, None], mask=mcol[:, None] & mrow[None, :], other=0.0)
        return tl.where(mrow[None, :], gt, G_last[:, None])
    else:
        return G[None, :]


@triton.jit
def _seg_columns(i_c, NVT, K, V, BK: tl.constexpr, BV: tl.constexpr):
    """Column tile i_c of a segment summary [K, V + K]: tiles below NVT are value columns (b or c, start 0), the
    others key columns (M or N, start I). Returns (is_val, cv [BV] within its part, their mask, the start [BK, BV])."""
    cols = tl.arange(0, BK)
    is_val = i_c < NVT
    cv = tl.where(is_val, i_c * BV, (i_c - NVT) * BV) + tl.arange(0, BV)
    start = tl.where((cols[:, None] == cv[None, :]) & (cv < tl.where(is_val, 0, K))[None, :], 1.0, 0.0)
    return is_val, cv, cv < tl.where(is_val, V, K), start


@triton.jit
def _last_row(th, mrow):
    """Row index (into the [B, T, H] token-head layout) of the chunk's last valid token: th grows with the row."""
    return tl.max(tl.where(mrow, th, 0), 0)


@triton.jit
def _last_mask(o_i, mrow):
    """[BT] mask of the chunk's last valid row (where the G_C term of the gate gradient enters)."""
    return o_i == tl.sum(mrow.to(tl.int32), 0) - 1


@triton.jit
def _gate_load(gc_ptr, th, mrow, cols, mcol, K, PER_CHANNEL: tl.constexpr):
    """Chunk-local cumulative log-decay G ([BT] or [BT, BK], fp32) and its last value G_C ([] or [BK]), loaded from
    ``chunk_local_cumsum``'s output; rows past the end of the clip hold G_C (as a cumulative sum would), so every
    pairwise decay e^{G_i - G_j} with i >= j stays <= 1. No tl.cumsum in the kernels: Triton's scan results used in
    two layouts are a known miscompile class (triton issues 3017, 7817)."""
    last = _last_row(th, mrow)
    if PER_CHANNEL:
        g_last = tl.load(gc_ptr + last * K + cols, mask=mcol, other=0.0)
        gt = tl.load(gc_ptr + th[:, None] * K + cols[None, :], mask=mrow[:, None] & mcol[None, :], other=0.0)
        return tl.where(mrow[:, None], gt, g_last[None, :]), g_last
    else:
        g_last = tl.load(gc_ptr + last)
        gt = tl.load(gc_ptr + th, mask=mrow, other=0.0)
        return tl.where(mrow, gt, g_last), g_last


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
def _channel_column(q_ptr, k_ptr, gc_ptr, th, mrow, c, K, causal):
    """Key channel c of a chunk for the per-channel gate: k_c, q_c ([BT] fp32) and the pairwise decays
    e[i, j] = e^{G_i - G_j} of that channel for i >= j, 0 above ([BT, BT]; G loaded, rows past the end at G_C)."""
    k_c = tl.load(k_ptr + th * K + c, mask=mrow, other=0.0).to(tl.float32)
    q_c = tl.load(q_ptr + th * K + c, mask=mrow, other=0.0).to(tl.float32)
    g_last = tl.load(gc_ptr + _last_row(th, mrow) * K + c)
    g_c = tl.where(mrow, tl.load(gc_ptr + th * K + c, mask=mrow, other=0.0), g_last)
    return k_c, q_c, tl.exp(tl.where(causal, g_c[:, None] - g_c[None, :], float("-inf")))


@triton.jit
def _pairwise_channel(q_ptr, k_ptr, gc_ptr, th, mrow, K, BT: tl.constexpr):
    """Per-key-channel gate: P_kk[i, j] = k_i^T diag(e^{G_i - G_j}) k_j and P_qk (q_i instead of k_i) for i >= j,
    zero above; [BT, BT] fp32 each. The decay cannot leave the channel sum, so this is an exact sum of rank-1 tiles
    over channels (columns reloaded from memory), on CUDA cores."""
    o_i = tl.arange(0, BT)
    causal = o_i[:, None] >= o_i[None, :]
    p_kk = tl.zeros([BT, BT], dtype=tl.float32)
    p_qk = tl.zeros([BT, BT], dtype=tl.float32)
    for c in range(K):
        k_c, q_c, e = _channel_column(q_ptr, k_ptr, gc_ptr, th, mrow, c, K, causal)
        ke = k_c[None, :] * e
        p_kk += k_c[:, None] * ke
        p_qk += q_c[:, None] * ke
    return p_kk, p_qk
