"""Triton backward of the chunkwise gated delta rule: two launches (derivation in README.md).

1. ``_state_bwd_kernel``, one program per (value tile, batch*head), sequential over chunks in reverse with dS (the
   gradient of the state leaving the chunk) in fp32 registers: dU = A^T dO + (K * e^{G_C - G}) dS, stores dS and dU,
   then dS <- e^{G_C} dS + scale (Q * e^G)^T dO - w^T dU; the last dS is d initial_state.
2. ``_chunk_bwd_kernel``, one program per (chunk, batch*head), fully parallel: from the states S saved by the forward,
   dS, U, dU and dO it forms dq, dk, dv, dbeta and dg in one pass (the WY backward through T = (I + L)^-1,
   dL = -T^T dT T^T, the decayed Gram and score products) and dG, which the host turns into dg by a reverse
   chunk-local cumsum.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gdkvm.ops._host import cdiv
from gdkvm.ops.gated_delta.chunk_bwd_pre import launch_state_bwd_pre
from gdkvm.ops.gated_delta.chunk_jit import (
    _bwd_chunk,
    _channel_column,
    _chunk_rows,
    _gate_load,
    _last_mask,
    _program_bh_segment,
    _rows,
)
from gdkvm.ops.gated_delta.chunk_seg import _seg_bwd_kernel, segment_starts
from gdkvm.ops.gated_delta.gates import reverse_chunk_local_cumsum
from gdkvm.ops.gated_delta.launch import (
    PARALLEL_CONFIGS,
    SM_COUNT,
    STATE_CONFIGS,
    _segment_plan,
    autotuning,
    backward_mode,
    block_k,
    heuristic,
    key_decay,
    prec,
    split16,
    tuned,
)


@triton.jit
def _state_bwd_kernel(
    q_ptr, k_ptr, gc_ptr, w_ptr, a_ptr, do_ptr, dht_ptr, dh0_ptr, dhs_ptr, dus_ptr, scale, T, H, K, V, NT, NS, CPS,
    PER_CHANNEL: tl.constexpr, HAS_DHT: tl.constexpr, STORE_DH0: tl.constexpr, SEG: tl.constexpr,
    SPLIT16: tl.constexpr, KEY_DECAY: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):  # fmt: skip
    """Reverse pass over the chunks of one (value tile, batch*head, segment). With SEG, segment i_s covers chunks
    [i_s * CPS, (i_s + 1) * CPS) and starts from the dS (leaving its last chunk) that ``_seg_combine_kernel`` stored
    in dht_ptr ([B*H*NS, K, V] fp32); otherwise NS = 1 and dht_ptr is [B*H, K, V]. Unlike the other token kernels
    it takes H, K and V as runtime values: as compile-time constants it was 4.6% slower at K 128 (H200, 2026-11-29)."""
    i_v = tl.program_id(0)
    i_bhs, i_bh, i_s, i_b, i_h = _program_bh_segment(NS, H)
    cols = tl.arange(0, BK)
    cv = i_v * BV + tl.arange(0, BV)
    mcol = cols < K
    m_s = mcol[:, None] & (cv < V)[None, :]
    p_s = cols[:, None] * V + cv[None, :]
    if SEG or HAS_DHT:
        dstate = tl.load(dht_ptr + i_bhs.to(tl.int64) * K * V + p_s, mask=m_s, other=0.0).to(tl.float32)
    else:
        dstate = tl.zeros([BK, BV], dtype=tl.float32)
    c0 = i_s * CPS
    c_end = tl.minimum(NT, c0 + CPS)
    for j in range(c0, c_end):
        i_t = c_end - 1 - (j - c0)
        th, mrow = _chunk_rows(i_b, i_t, i_h, T, H, BT)
        m_v = mrow[:, None] & (cv < V)[None, :]
        chunk_bh = (i_b.to(tl.int64) * NT + i_t) * H + i_h
        tl.store(dhs_ptr + chunk_bh * K * V + p_s, dstate.to(dhs_ptr.dtype.element_ty), mask=m_s)
        dpseudo, dstate = _bwd_chunk(
            q_ptr, k_ptr, gc_ptr, w_ptr, a_ptr, do_ptr, dstate, th, mrow, cols, mcol, cv, m_v, scale, K, V,
            PER_CHANNEL, SPLIT16, KEY_DECAY, BT,
        )  # fmt: skip
        tl.store(dus_ptr + th[:, None] * V + cv[None, :], dpseudo, mask=m_v)
    if STORE_DH0:
        if i_s == 0:
            tl.store(dh0_ptr + i_bh.to(tl.int64) * K * V + p_s, dstate, mask=m_s)


@triton.jit
def _pairwise_bwd_channel(
    q_ptr, k_ptr, gc_ptr, th, mrow, d_kk, d_qk, d_lower, cols, K, BT: tl.constexpr, BK: tl.constexpr
):  # fmt: skip
    """Per-key-channel gate: gradients of P_kk (d_kk) and P_qk (d_qk) into dq, dk, dG ([BT, BK] each) and
    sum_j d_lower_ij P_kk_ij ([BT]), channel by channel."""
    o_i = tl.arange(0, BT)
    causal = o_i[:, None] >= o_i[None, :]
    dq = tl.zeros([BT, BK], dtype=tl.float32)
    dk = tl.zeros([BT, BK], dtype=tl.float32)
    dG = tl.zeros([BT, BK], dtype=tl.float32)
    dbeta = tl.zeros([BT], dtype=tl.float32)
    for c in range(K):
        k_c, q_c, e = _channel_column(q_ptr, k_ptr, gc_ptr, th, mrow, c, K, causal)
        ke_j = k_c[None, :] * e
        dbeta += tl.sum(d_lower * (k_c[:, None] * ke_j), 1)
        r1 = tl.sum(d_kk * ke_j, 1)
        c1 = tl.sum(d_kk * (k_c[:, None] * e), 0)
        r2 = tl.sum(d_qk * ke_j, 1)
        c2 = tl.sum(d_qk * (q_c[:, None] * e), 0)
        sel = (cols == c)[None, :]
        dk += tl.where(sel, (r1 + c1 + c2)[:, None], 0.0)
        dq += tl.where(sel, r2[:, None], 0.0)
        dG += tl.where(sel, (k_c * (r1 - c1 - c2) + q_c * r2)[:, None], 0.0)
    return dq, dk, dG, dbeta


@triton.jit
def _bwd_value_sweep(
    v_ptr, hs_ptr, dhs_ptr, us_ptr, dus_ptr, do_ptr, dv_ptr, th, mrow, cols, mcol, chunk_kv, bt, t_inv, V,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Everything of the backward chunk pass that sums over value channels, one value tile at a time: dO S^T,
    U dS'^T, dw = -dU S^T ([BT, BK] each), dA = dO U^T, dT (the du part) ([BT, BT]), dbeta (the du part) and
    sum_v dS' * S ([BK]); dv is stored on the way."""
    dt = hs_ptr.dtype.element_ty  # operand dtype of the tensor-core products
    d_qs = tl.zeros([BT, BK], dtype=tl.float32)
    d_kbar = tl.zeros([BT, BK], dtype=tl.float32)
    dw = tl.zeros([BT, BK], dtype=tl.float32)
    d_a = tl.zeros([BT, BT], dtype=tl.float32)
    d_t = tl.zeros([BT, BT], dtype=tl.float32)
    dbeta = tl.zeros([BT], dtype=tl.float32)
    dgc = tl.zeros([BK], dtype=tl.float32)
    for i_v in range(tl.cdiv(V, BV)):
        cv = i_v * BV + tl.arange(0, BV)
        m_v = mrow[:, None] & (cv < V)[None, :]
        m_s = mcol[:, None] & (cv < V)[None, :]
        p_v = th[:, None] * V + cv[None, :]
        s_t = tl.load(hs_ptr + chunk_kv + cols[:, None] * V + cv[None, :], mask=m_s, other=0.0)
        ds_t = tl.load(dhs_ptr + chunk_kv + cols[:, None] * V + cv[None, :], mask=m_s, other=0.0)
        u_t = tl.load(us_ptr + p_v, mask=m_v, other=0.0)
        du_t = tl.load(dus_ptr + p_v, mask=m_v, other=0.0).to(tl.float32)
        do_t = tl.load(do_ptr + p_v, mask=m_v, other=0.0).to(dt)
        v_t = tl.load(v_ptr + p_v, mask=m_v, other=0.0).to(tl.float32)
        du_dt = du_t.to(dt)
        d_qs += tl.dot(do_t, tl.trans(s_t))
        d_kbar += tl.dot(u_t, tl.trans(ds_t))
        dw -= tl.dot(du_dt, tl.trans(s_t))
        d_a += tl.dot(do_t, tl.trans(u_t))
        d_t += tl.dot(du_dt, tl.trans((v_t * bt[:, None]).to(dt)))
        t_du = tl.dot(tl.trans(t_inv), du_t, input_precision=PREC)
        dbeta += tl.sum(t_du * v_t, 1)
        tl.store(dv_ptr + p_v, (t_du * bt[:, None]).to(dv_ptr.dtype.element_ty), mask=m_v)
        dgc += tl.sum(ds_t.to(tl.float32) * s_t.to(tl.float32), 1)
    return d_qs, d_kbar, dw, d_a, d_t, dbeta, dgc


@triton.jit
def _pairwise_bwd_head(kd, qd, G, d_kk, d_qk, d_lower, scr_ptr, th, mrow, BT: tl.constexpr):
    """Per-head gate: gradients of P_kk and P_qk (kd, qd: [BT, BK] in the input dtype) into dq, dk ([BT, BK]),
    the per-row dG ([BT]) and sum_j d_lower_ij P_kk_ij ([BT]). Tensor-core products."""
    o_i = tl.arange(0, BT)
    decay = tl.exp(tl.where(o_i[:, None] >= o_i[None, :], G[:, None] - G[None, :], float("-inf")))
    p_kk = tl.dot(kd, tl.trans(kd)) * decay
    p_qk = tl.dot(qd, tl.trans(kd)) * decay
    m_kk = (d_kk * decay).to(kd.dtype)
    m_qk = (d_qk * decay).to(kd.dtype)
    # Transposes go through a scratch round trip instead of tl.trans of an MMA-layout tile, the pattern that
    # Hopper + triton 3.4-3.7.0 miscompiles in the equivalent FLA kernel (FLA issue #640).
    p_scr = scr_ptr + th[:, None] * (2 * BT) + o_i[None, :]
    tl.store(p_scr, m_kk, mask=mrow[:, None])
    tl.store(p_scr + BT, m_qk, mask=mrow[:, None])
    tl.debug_barrier()
    p_scr_t = scr_ptr + th[None, :] * (2 * BT) + o_i[:, None]
    m_kk_t = tl.load(p_scr_t, mask=mrow[None, :], other=0.0)
    m_qk_t = tl.load(p_scr_t + BT, mask=mrow[None, :], other=0.0)
    dk = tl.dot(m_kk, kd) + tl.dot(m_kk_t, kd) + tl.dot(m_qk_t, qd)
    dq = tl.dot(m_qk, kd)
    x_kk = d_kk * p_kk
    x_qk = d_qk * p_qk
    dG = tl.sum(x_kk, 1) - tl.sum(x_kk, 0) + tl.sum(x_qk, 1) - tl.sum(x_qk, 0)
    return dq, dk, dG, tl.sum(d_lower * p_kk, 1)


@triton.jit
def _chunk_bwd_kernel(
    q_ptr, k_ptr, v_ptr, gc_ptr, beta_ptr, t_ptr, hs_ptr, dhs_ptr, us_ptr, dus_ptr, do_ptr,
    dq_ptr, dk_ptr, dv_ptr, dg_ptr, dbeta_ptr, scr_ptr, scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, NT,
    PER_CHANNEL: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Per chunk: dq, dk, dv (input dtype), dbeta and dG, the gradient of the chunk-local cumulative log-decay (fp32;
    the host turns it into dg)."""
    i_t = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H
    tok0 = i_b.to(tl.int64) * T + i_t * BT
    o_i = tl.arange(0, BT)
    cols = tl.arange(0, BK)
    mrow = o_i < T - i_t * BT
    mcol = cols < K
    th = (tok0 + o_i) * H + i_h
    m_k = mrow[:, None] & mcol[None, :]
    chunk_kv = ((i_b.to(tl.int64) * NT + i_t) * H + i_h) * K * V
    bt = tl.load(beta_ptr + th, mask=mrow, other=0.0).to(tl.float32)
    t_inv = tl.load(t_ptr + th[:, None] * BT + o_i[None, :], mask=mrow[:, None], other=0.0)
    dq, dkbar, dw, d_a, d_t, dbeta, dgc = _bwd_value_sweep(
        v_ptr, hs_ptr, dhs_ptr, us_ptr, dus_ptr, do_ptr, dv_ptr, th, mrow, cols, mcol, chunk_kv, bt, t_inv, V,
        BT, BK, BV, PREC,
    )  # fmt: skip
    # Loaded only now, to keep the value sweep's register footprint small.
    kt = tl.load(k_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0).to(tl.float32)
    qt = tl.load(q_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0).to(tl.float32)
    G, G_last = _gate_load(gc_ptr, th, mrow, cols, mcol, K, PER_CHANNEL)
    e = tl.exp(_rows(G, PER_CHANNEL))
    dq = dq * e * scale
    dG = qt * dq
    dk = dkbar * tl.exp(_rows(G_last - G, PER_CHANNEL))
    dG -= kt * dk
    dgc = tl.sum(kt * dk, 0) + tl.exp(G_last) * dgc
    kb = kt * e * bt[:, None]
    d_t += tl.dot(dw, tl.trans(kb), input_precision=PREC)
    t_dw = tl.dot(tl.trans(t_inv), dw, input_precision=PREC)
    dk += t_dw * e * bt[:, None]
    dbeta += tl.sum(t_dw * e * kt, 1)
    dG += t_dw * kb
    d_lower = -tl.dot(tl.trans(t_inv), tl.dot(d_t, tl.trans(t_inv), input_precision=PREC), input_precision=PREC)
    d_lower = tl.where(o_i[:, None] > o_i[None, :], d_lower, 0.0)
    d_kk = d_lower * bt[:, None]
    d_qk = tl.where(o_i[:, None] >= o_i[None, :], d_a * scale, 0.0)
    if PER_CHANNEL:
        dq2, dk2, dG2, dbeta2 = _pairwise_bwd_channel(
            q_ptr, k_ptr, gc_ptr, th, mrow, d_kk, d_qk, d_lower, cols, K, BT, BK
        )
        dG += dG2 + tl.where(_last_mask(o_i, mrow)[:, None], dgc[None, :], 0.0)
        tl.store(dg_ptr + th[:, None] * K + cols[None, :], dG, mask=m_k)
    else:
        pdt = q_ptr.dtype.element_ty  # the pairwise products stay in the input dtype (shared-memory budget)
        kd, qd = kt.to(pdt), qt.to(pdt)
        dq2, dk2, dG2, dbeta2 = _pairwise_bwd_head(kd, qd, G, d_kk, d_qk, d_lower, scr_ptr, th, mrow, BT)
        dGr = tl.sum(dG, 1) + dG2 + tl.where(_last_mask(o_i, mrow), tl.sum(dgc, 0), 0.0)
        tl.store(dg_ptr + th, dGr, mask=mrow)
    tl.store(dq_ptr + th[:, None] * K + cols[None, :], (dq + dq2).to(dq_ptr.dtype.element_ty), mask=m_k)
    tl.store(dk_ptr + th[:, None] * K + cols[None, :], (dk + dk2).to(dk_ptr.dtype.element_ty), mask=m_k)
    tl.store(dbeta_ptr + th, dbeta + dbeta2, mask=mrow)


def launch_state_bwd(
    q: torch.Tensor,
    k: torch.Tensor,
    gc: torch.Tensor,
    saved: dict[str, torch.Tensor | None],
    value_dim: int,
    scale: float,
    do: torch.Tensor,
    dht: torch.Tensor | None,
    need_dh0: bool,
    chunk_size: int = 64,
) -> dict[str, torch.Tensor | None]:
    """Launch 3 (reverse over chunks): dstates [B, NT, H, K, V] (gradient of the state leaving each chunk, intermediate
    dtype), dpseudo = dU [B, T, H, V] fp32 and dh0 [B, H, K, V] fp32 (None unless ``need_dh0``). With
    the prepass mode (``launch.backward_mode``; no segments, no head + tail products) as two launches,
    ``chunk_bwd_pre``."""
    batch, length, heads, key_dim = k.shape
    n_chunks = cdiv(length, chunk_size)
    inter = saved["w"].dtype
    const = dict(PER_CHANNEL=gc.dim() == 4, SPLIT16=split16(q.dtype, inter, "bwd"), KEY_DECAY=key_decay(),
                 BT=chunk_size, BK=block_k(key_dim))  # fmt: skip
    ns, cps, cfg = _segment_plan(n_chunks, batch * heads, key_dim, value_dim, "state_bwd", inter.itemsize < 4)
    mode, one_wave = backward_mode(), batch * heads * cdiv(value_dim, cfg["BV"]) <= SM_COUNT
    if ns == 1 and not const["SPLIT16"] and (mode == "prepass" or (mode == "auto" and one_wave)):
        return launch_state_bwd_pre(q, k, gc, saved, value_dim, scale, do, dht, need_dh0, chunk_size)
    dstates = torch.empty_like(saved["states"])
    dpseudo = torch.empty(batch, length, heads, value_dim, device=q.device, dtype=torch.float32)
    dh0 = torch.empty(batch, heads, key_dim, value_dim, device=q.device, dtype=torch.float32) if need_dh0 else None
    dend = dht
    if ns > 1:
        seg_meta = {"scalars": (scale, length, heads, key_dim, value_dim, n_chunks), "const": const}
        dend = segment_starts(
            _seg_bwd_kernel, (q, k, gc, saved["w"], saved["a"], do), dht, batch * heads, key_dim, value_dim, ns, cps,
            cfg, seg_meta, True, q.device,
        )  # fmt: skip
    args = (
        q, k, gc, saved["w"], saved["a"], do, dend if dend is not None else dpseudo, dh0 if need_dh0 else dpseudo,
        dstates, dpseudo, scale, length, heads, key_dim, value_dim, n_chunks, ns, cps,
    )  # fmt: skip
    meta = dict(**const, HAS_DHT=dht is not None, STORE_DH0=need_dh0, SEG=ns > 1)
    if autotuning() and ns == 1:
        grid = lambda m: (cdiv(value_dim, m["BV"]), batch * heads)  # noqa: E731
        tuned(_state_bwd_kernel, "state_bwd", STATE_CONFIGS, True)[grid](*args, **meta)
    else:
        _state_bwd_kernel[(cdiv(value_dim, cfg["BV"]), batch * heads * ns)](
            *args, **meta, BV=cfg["BV"], num_warps=cfg["num_warps"], num_stages=cfg["num_stages"]
        )
    return {"dstates": dstates, "dpseudo": dpseudo, "dh0": dh0}


def launch_chunk_bwd(
    saved: dict[str, torch.Tensor | None],
    state_grads: dict[str, torch.Tensor | None],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gc: torch.Tensor,
    beta: torch.Tensor,
    scale: float,
    do: torch.Tensor,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, ...]:
    """Launch 4 (parallel over chunks): dq, dk [B, T, H, K], dv [B, T, H, V] (dtype of q), dg (gradient of
    the raw log-decay g, shape of gc: the kernel's dG through ``reverse_chunk_local_cumsum``) and dbeta [B, T, H]
    fp32."""
    batch, length, heads, key_dim = k.shape
    value_dim = v.shape[-1]
    n_chunks = cdiv(length, chunk_size)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    d_big_g = torch.empty(gc.shape, device=gc.device, dtype=torch.float32)
    dbeta = torch.empty(beta.shape, device=beta.device, dtype=torch.float32)
    scratch = torch.empty(batch, length, heads, 2 * chunk_size, device=q.device, dtype=q.dtype)
    args = (
        q, k, v, gc, beta, saved["t_inv"], saved["states"], state_grads["dstates"], saved["pseudo"],
        state_grads["dpseudo"], do, dq, dk, dv, d_big_g, dbeta, scratch, scale, length, heads, key_dim, value_dim,
        n_chunks,
    )  # fmt: skip
    cfg = heuristic("chunk_bwd", key_dim, value_dim, batch * heads, saved["w"].dtype.itemsize < 4)
    meta = dict(PER_CHANNEL=gc.dim() == 4, BT=chunk_size, BK=block_k(key_dim), BV=cfg["BV"], PREC=prec(q.dtype))
    grid = (n_chunks, batch * heads)
    if autotuning():
        tuned(_chunk_bwd_kernel, "chunk_bwd", PARALLEL_CONFIGS, False)[grid](*args, **meta)
    else:
        _chunk_bwd_kernel[grid](*args, **meta, num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    return dq, dk, dv, reverse_chunk_local_cumsum(d_big_g, chunk_size), dbeta


def chunk_bwd(
    saved: dict[str, torch.Tensor | None],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gc: torch.Tensor,
    beta: torch.Tensor,
    scale: float,
    do: torch.Tensor,
    dht: torch.Tensor | None,
    need_dh0: bool,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, ...]:
    """Runs the backward kernels.

    Args:
        saved: the forward's dict (t_inv, a, w, states, pseudo).
        q, k: [B, T, H, K]; v: [B, T, H, V]; gc: [B, T, H] or [B, T, H, K] fp32, the chunk-local cumulative
            log-decay (``chunk_local_cumsum``); beta: [B, T, H]; all contiguous.
        scale: query scale.
        do: [B, T, H, V] gradient of o (contiguous, dtype of q).
        dht: [B, H, K, V] fp32 gradient of the final state, or None.
        need_dh0: whether to return the gradient of the initial state.
        chunk_size: C used by the forward.

    Returns:
        dq, dk [B, T, H, K], dv [B, T, H, V] (dtype of q); dg (the gradient of the raw log-decay g, shape of gc)
        and dbeta [B, T, H] fp32;
        dh0 [B, H, K, V] fp32 or None.
    """
    state_grads = launch_state_bwd(q, k, gc, saved, v.shape[-1], scale, do, dht, need_dh0, chunk_size)
    grads = launch_chunk_bwd(saved, state_grads, q, k, v, gc, beta, scale, do, chunk_size)
    return (*grads, state_grads["dh0"])
