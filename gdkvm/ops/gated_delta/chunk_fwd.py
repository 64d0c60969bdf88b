"""Triton forward of the chunkwise gated delta rule (token rule): two launches.

1. ``_prep_kernel``, one program per (chunk, batch*head), fully parallel: chunk-local cumulative log-decay G (fp32),
   the decayed key Gram L = strict-lower(beta_i k_i^T diag(e^{G_i - G_j}) k_j), its UT inverse T = (I + L)^-1 (by
   recursive doubling on tensor cores at 4+ warps; at 2 warps by forward substitution on 16x16 diagonal blocks in
   fp32, then a block merge (I - N)(I + N^2) T_diag with N = T_diag L_off; see ``launch.solve_mode``),
   w = T diag(beta) (K * e^G), u = T diag(beta) V, and the causal query-key scores A = scale (Q K^T * e^{G_i - G_j}).
   With GDKVM_TOKEN_PREP=split (opt-in) T comes from ``chunk_gram``'s blockwise one-warp launch and is loaded here.
2. ``_state_fwd_kernel``, one program per (value tile, batch*head), sequential over chunks with the state S [K, BV] in
   fp32 registers: U = u - w S, o = scale (Q * e^G) S + A U, S <- e^{G_C} S + (K * e^{G_C - G})^T U.
   With ``save`` it also writes S entering each chunk and U for the backward (which then needs no forward replay).
   A per-head decay scales the [C, BV] tiles rather than k and q (``launch.key_decay``); GDKVM_TOKEN_O=split moves o
   to ``chunk_out.py``'s parallel kernel.

G is computed once on the host (``chunk_local_cumsum``, fp32) and loaded by every kernel: no kernel scans (Triton scan
results used in two layouts are a known miscompile class). Pairwise decays e^{G_i - G_j} are only
formed for i >= j (masked before exp), so nothing overflows. A per-key-channel gate (KDA) cannot be folded out of the
Gram product; it is computed exactly as a sum over key channels of rank-1 tiles (CUDA cores, slower, any gate).
Stored intermediates (w, u, A, U, per-chunk S) are fp32 by default, or the input dtype with
GDKVM_TOKEN_PRECISION=fast up to K 64 (see ``launch.intermediate_dtype``); the kernels take their operand dtype
from the buffers they are given.
No ``tl.make_block_ptr``: pointer arithmetic and masks only, so the kernels also run under TRITON_INTERPRET=1.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from gdkvm.ops._host import cdiv
from gdkvm.ops.gated_delta.chunk_gram import launch_gram_solve
from gdkvm.ops.gated_delta.chunk_jit import (
    _chunk_rows,
    _dot_hilo,
    _gate_load,
    _pairwise_channel,
    _program_bh_segment,
    _rows,
    _state_update,
)
from gdkvm.ops.gated_delta.chunk_out import launch_output
from gdkvm.ops.gated_delta.chunk_overlap import piece_ranges, prep_ahead
from gdkvm.ops.gated_delta.chunk_seg import _seg_fwd_kernel, segment_starts
from gdkvm.ops.gated_delta.chunk_solve import (
    _solve_unit_lower,
    _solve_unit_lower_doubling,
    _solve_unit_lower_regs,
)
from gdkvm.ops.gated_delta.gates import chunk_local_cumsum
from gdkvm.ops.gated_delta.launch import (
    PARALLEL_CONFIGS,
    STATE_CONFIGS,
    _segment_plan,
    autotuning,
    block_k,
    check_precision_mode,
    heuristic,
    intermediate_dtype,
    key_decay,
    output_mode,
    overlap_pieces,
    prec,
    prep_mode,
    solve_mode,
    split16,
    tuned,
)


@triton.jit
def _prep_kernel(
    q_ptr, k_ptr, v_ptr, gc_ptr, beta_ptr, t_ptr, a_ptr, w_ptr, u_ptr, qw_ptr, ou_ptr, scale, T, H: tl.constexpr,
    K: tl.constexpr, V: tl.constexpr, C0,
    PER_CHANNEL: tl.constexpr, BT: tl.constexpr, BS: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PREC: tl.constexpr, SOLVE: tl.constexpr, FOLD: tl.constexpr, STORE_T: tl.constexpr,
):  # fmt: skip
    """Per chunk: G, L, T = (I + L)^-1 (fp32, kept for the backward); A, w and u in the dtype of their buffers (the
    intermediate dtype, see ``intermediate_dtype``). With FOLD also the folded output terms of ``_state_fwd_kernel``:
    Q' = scale (Q * e^G) - A w [BT, K] and A u [BT, V], so that the state pass computes o = Q' S + A u."""
    i_t = tl.program_id(0) + C0  # chunks [C0, C0 + grid) of the clip
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
    G, _ = _gate_load(gc_ptr, th, mrow, cols, mcol, K, PER_CHANNEL)
    if PER_CHANNEL:
        p_kk, p_qk = _pairwise_channel(q_ptr, k_ptr, gc_ptr, th, mrow, K, BT)
        tl.store(a_ptr + p_t, (scale * p_qk).to(a_ptr.dtype.element_ty), mask=m_t)
    else:
        decay = tl.exp(tl.where(o_i[:, None] >= o_i[None, :], G[:, None] - G[None, :], float("-inf")))
        qt = tl.load(q_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
        p_qk = tl.dot(qt, tl.trans(kt)) * decay
        tl.store(a_ptr + p_t, (p_qk * scale).to(a_ptr.dtype.element_ty), mask=m_t)
        if SOLVE != 3:  # the split prep loads T and needs no key Gram
            p_kk = tl.dot(kt, tl.trans(kt)) * decay
    if SOLVE == 3:  # the split prep (launch.prep_mode): chunk_gram stored T
        t_inv = tl.load(t_ptr + p_t, mask=m_t, other=0.0)
    else:
        lower = tl.where(o_i[:, None] > o_i[None, :], bt[:, None] * p_kk, 0.0)
        if SOLVE == 2:
            t_inv = _solve_unit_lower_doubling(lower, BT, PREC)
        elif SOLVE == 1:
            t_inv = _solve_unit_lower_regs(lower, BT, BS, PREC)
        else:
            t_inv = _solve_unit_lower(lower, t_ptr, tok0, i_h, H, n_valid, BT, BS, PREC)
    if STORE_T:
        tl.store(t_ptr + p_t, t_inv, mask=m_t)
    idt = w_ptr.dtype.element_ty  # operand dtype of the intermediates (see intermediate_dtype)
    t_dt = t_inv.to(idt)
    kb = (kt.to(tl.float32) * tl.exp(_rows(G, PER_CHANNEL)) * bt[:, None]).to(idt)
    w_dt = tl.dot(t_dt, kb).to(idt)
    tl.store(w_ptr + th[:, None] * K + cols[None, :], w_dt, mask=m_k)
    a_dt = (p_qk * scale).to(idt)
    if FOLD:
        qs = tl.load(q_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0).to(tl.float32)
        q_fold = qs * tl.exp(_rows(G, PER_CHANNEL)) * scale - tl.dot(a_dt, w_dt)
        tl.store(qw_ptr + th[:, None] * K + cols[None, :], q_fold.to(idt), mask=m_k)
    for i_v in range(tl.cdiv(V, BV)):
        cv = i_v * BV + tl.arange(0, BV)
        m_v = mrow[:, None] & (cv < V)[None, :]
        vt = tl.load(v_ptr + th[:, None] * V + cv[None, :], mask=m_v, other=0.0).to(tl.float32)
        u_dt = tl.dot(t_dt, (vt * bt[:, None]).to(idt)).to(idt)
        tl.store(u_ptr + th[:, None] * V + cv[None, :], u_dt, mask=m_v)
        if FOLD:
            tl.store(ou_ptr + th[:, None] * V + cv[None, :], tl.dot(a_dt, u_dt).to(idt), mask=m_v)


@triton.jit
def _state_fwd_kernel(
    q_ptr, k_ptr, gc_ptr, w_ptr, u_ptr, a_ptr, ou_ptr, h0_ptr, o_ptr, ht_ptr, hs_ptr, us_ptr, scale, T, H: tl.constexpr,
    K: tl.constexpr, V: tl.constexpr, NT,
    NS, CPS, C0, PER_CHANNEL: tl.constexpr, HAS_H0: tl.constexpr, STORE_HT: tl.constexpr, SAVE: tl.constexpr,
    EMIT_O: tl.constexpr, FOLD: tl.constexpr, SEG: tl.constexpr, SPLIT16: tl.constexpr, KEY_DECAY: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):  # fmt: skip
    """Sequential over chunks for one (value tile, batch*head, segment): o (EMIT_O), the final state and (SAVE)
    per-chunk states/U. With SEG the chunks [i_s * CPS, (i_s + 1) * CPS) of segment i_s start from the state that
    ``_seg_combine_kernel`` stored in h0_ptr ([B*H*NS, K, V] fp32); otherwise NS = 1, h0_ptr is [B*H, K, V] and the
    program runs chunks [C0, C0 + CPS) (one piece of an overlapped forward, see ``chunk_overlap``).
    With FOLD, q_ptr holds the prep's Q' = scale (Q * e^G) - A w and ou_ptr its A u: o = Q' S + A u, two products
    that need only S (instead of A (u - w S), which waits for U)."""
    i_v = tl.program_id(0)
    i_bhs, i_bh, i_s, i_b, i_h = _program_bh_segment(NS, H)
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
    c_end = tl.minimum(NT, C0 + (i_s + 1) * CPS)
    for i_t in range(C0 + i_s * CPS, c_end):
        th, mrow = _chunk_rows(i_b, i_t, i_h, T, H, BT)
        m_k = mrow[:, None] & mcol[None, :]
        m_v = mrow[:, None] & (cv < V)[None, :]
        if SAVE:
            chunk_bh = (i_b.to(tl.int64) * NT + i_t) * H + i_h
            tl.store(hs_ptr + chunk_bh * K * V + p_s, state.to(hs_ptr.dtype.element_ty), mask=m_s)
        if KEY_DECAY == 2 and not PER_CHANNEL:  # k loaded as [BK, BT] (see the state update below)
            kt = tl.load(k_ptr + th[None, :] * K + cols[:, None], mask=mcol[:, None] & mrow[None, :], other=0.0)
        else:
            kt = tl.load(k_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
        wt = tl.load(w_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
        ut = tl.load(u_ptr + th[:, None] * V + cv[None, :], mask=m_v, other=0.0).to(tl.float32)
        G, G_last = _gate_load(gc_ptr, th, mrow, cols, mcol, K, PER_CHANNEL)
        s_dt = state.to(dt)
        pseudo = ut - tl.dot(wt, s_dt)
        if SAVE:
            tl.store(us_ptr + th[:, None] * V + cv[None, :], pseudo.to(us_ptr.dtype.element_ty), mask=m_v)
        p_dt = pseudo.to(dt)
        if EMIT_O and FOLD:
            qt = tl.load(q_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0).to(dt)
            ot = tl.dot(qt, s_dt) + tl.load(ou_ptr + th[:, None] * V + cv[None, :], mask=m_v, other=0.0).to(tl.float32)
            tl.store(o_ptr + th[:, None] * V + cv[None, :], ot.to(o_ptr.dtype.element_ty), mask=m_v)
        elif EMIT_O:
            qt = tl.load(q_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
            at = tl.load(a_ptr + th[:, None] * BT + o_i[None, :], mask=mrow[:, None], other=0.0)
            if PER_CHANNEL or KEY_DECAY:
                ot = tl.dot((qt * tl.exp(_rows(G, PER_CHANNEL)) * scale).to(dt), s_dt)
            elif SPLIT16:  # per-head gate: scale the rows of Q S, not Q (Q reaches the tensor cores as loaded)
                ot = _dot_hilo(qt, state) * (tl.exp(G) * scale)[:, None]
            else:
                ot = tl.dot(qt.to(dt), s_dt) * (tl.exp(G) * scale)[:, None]
            ot += tl.dot(at, p_dt)
            tl.store(o_ptr + th[:, None] * V + cv[None, :], ot.to(o_ptr.dtype.element_ty), mask=m_v)
        if KEY_DECAY == 2 and not PER_CHANNEL:  # the columns of k^T decayed: no register tile transposed
            state = state * tl.exp(G_last) + tl.dot((kt.to(tl.float32) * tl.exp(G_last - G)[None, :]).to(dt), p_dt)
        else:
            state = _state_update(kt, pseudo, state, G, G_last, dt, PER_CHANNEL, SPLIT16, KEY_DECAY)
    if STORE_HT:
        if i_s == NS - 1:
            tl.store(ht_ptr + i_bh.to(tl.int64) * K * V + p_s, state, mask=m_s)


def launch_prep(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gc: torch.Tensor,
    beta: torch.Tensor,
    scale: float,
    chunk_size: int = 64,
    keep_t: bool = True,
    chunks: tuple[int, int] | None = None,
    out: dict[str, torch.Tensor | None] | None = None,
) -> dict[str, torch.Tensor | None]:
    """Launch 1 (parallel over chunks): t_inv [B, T, H, C] fp32 (None unless ``keep_t``: only the backward reads it),
    a [B, T, H, C], w [B, T, H, K], u [B, T, H, V] in the intermediate dtype; with ``GDKVM_TOKEN_O=folded`` also
    q_fold [B, T, H, K] and a_u [B, T, H, V] (same dtype). Inputs contiguous; gc fp32 [B, T, H] or [B, T, H, K], the
    chunk-local cumulative log-decay (``chunk_local_cumsum``), as in every launch below. ``chunks`` = (c0, c1) runs
    only those chunks, into ``out`` (the dict an earlier call returned) when given."""
    batch, length, heads, key_dim = k.shape
    value_dim = v.shape[-1]
    n_chunks = cdiv(length, chunk_size)
    check_precision_mode(q.device)
    inter = intermediate_dtype(q.dtype, key_dim)
    cfg = heuristic("prep", key_dim, value_dim, batch * heads, inter.itemsize < 4)
    split = prep_mode() == "split" and gc.dim() == 3 and chunk_size == 64
    solve = 3 if split else ("scratch", "regs", "doubling").index(solve_mode(cfg["num_warps"]))
    store_t = keep_t or solve in (0, 3)  # the scratch solve reads its rows back from the T buffer, split reads T
    fold = output_mode() == "folded"
    if out is None:
        t_inv = torch.empty(batch, length, heads, chunk_size, device=q.device, dtype=torch.float32) if store_t else None
        a = torch.empty(batch, length, heads, chunk_size, device=q.device, dtype=inter)
        w = torch.empty(k.shape, device=q.device, dtype=inter)
        u = torch.empty(v.shape, device=q.device, dtype=inter)
        q_fold = torch.empty(k.shape, device=q.device, dtype=inter) if fold else w
        a_u = torch.empty(v.shape, device=q.device, dtype=inter) if fold else u
    else:
        t_inv, a, w, u = out["t_inv_buffer"], out["a"], out["w"], out["u"]
        q_fold, a_u = out.get("q_fold", w), out.get("a_u", u)
    c0, c1 = chunks if chunks is not None else (0, n_chunks)
    if split:
        launch_gram_solve(k, gc, beta, t_inv, block_k(key_dim), (c0, c1))
    meta = dict(
        PER_CHANNEL=gc.dim() == 4, BT=chunk_size, BS=min(16, chunk_size), BK=block_k(key_dim), BV=cfg["BV"],
        PREC=prec(q.dtype), SOLVE=solve, FOLD=fold, STORE_T=store_t and not split,
    )  # fmt: skip
    t_arg = t_inv if store_t else a  # never written without STORE_T
    args = (q, k, v, gc, beta, t_arg, a, w, u, q_fold, a_u, scale, length, heads, key_dim, value_dim, c0)
    grid = (c1 - c0, batch * heads)
    if autotuning():
        tuned(_prep_kernel, "prep", PARALLEL_CONFIGS, False)[grid](*args, **meta)
    else:
        _prep_kernel[grid](*args, **meta, num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    return {"t_inv": t_inv if keep_t else None, "t_inv_buffer": t_inv, "a": a, "w": w, "u": u,
            **({"q_fold": q_fold, "a_u": a_u} if fold else {})}  # fmt: skip


def launch_state_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    gc: torch.Tensor,
    prep: dict[str, torch.Tensor],
    value_dim: int,
    scale: float,
    initial_state: torch.Tensor | None,
    output_final_state: bool,
    save: bool,
    chunk_size: int = 64,
    pieces: list[tuple[int, int]] | None = None,
    ready=None,
) -> dict[str, torch.Tensor | None]:
    """Launch 2 (sequential over chunks): o [B, T, H, V] (dtype of q), the final state [B, H, K, V] fp32 (or None) and,
    with ``save``, the states entering each chunk [B, NT, H, K, V] and U [B, T, H, V] (intermediate dtype).
    ``GDKVM_TOKEN_O=split`` moves o to a parallel kernel; ``GDKVM_TOKEN_SEGMENTS`` cuts the chunks into segments
    scanned in parallel (see ``n_segments``); both are off by default. ``pieces`` (chunk ranges in order, no
    segments) runs the pass as one launch per piece, each continuing from the state the last one left, after
    ``ready(i)`` (see ``chunk_overlap``)."""
    batch, length, heads, key_dim = k.shape
    n_chunks = cdiv(length, chunk_size)
    w, u, a = prep["w"], prep["u"], prep["a"]
    split_o = output_mode() == "split"
    emit_o = not split_o  # o in this pass (the split mode's own kernel forms it otherwise)
    fold = "q_fold" in prep
    keep = save or split_o
    o = torch.empty(batch, length, heads, value_dim, device=q.device, dtype=q.dtype)
    final = torch.empty(batch, heads, key_dim, value_dim, device=q.device, dtype=torch.float32)
    states = torch.empty(batch, n_chunks, heads, key_dim, value_dim, device=q.device, dtype=w.dtype) if keep else None
    pseudo = torch.empty(batch, length, heads, value_dim, device=q.device, dtype=w.dtype) if keep else None
    hilo = split16(q.dtype, w.dtype, "fwd")
    const = dict(PER_CHANNEL=gc.dim() == 4, SPLIT16=hilo, KEY_DECAY=key_decay(), BT=chunk_size,
                 BK=block_k(key_dim))  # fmt: skip
    ns, cps, cfg = _segment_plan(n_chunks, batch * heads, key_dim, value_dim, "state", w.dtype.itemsize < 4)
    operands = (prep["q_fold"] if fold else q, k, gc, w, u, a, prep["a_u"] if fold else u)
    flags = dict(const, SAVE=keep, EMIT_O=emit_o, FOLD=fold)
    if pieces is not None and len(pieces) > 1:
        if ns > 1:
            raise ValueError("a forward in pieces cannot also be cut into segments")
        outputs = (o, final, states, pseudo)
        _state_pieces(operands, outputs, initial_state, scale, pieces, ready, dict(flags, SEG=False), cfg, n_chunks)
    else:
        h0 = initial_state
        if ns > 1:
            meta = {"scalars": (length, heads, key_dim, value_dim, n_chunks), "const": const}
            h0 = segment_starts(
                _seg_fwd_kernel, (k, gc, w, u), initial_state, batch * heads, key_dim, value_dim, ns, cps, cfg, meta,
                False, q.device,
            )  # fmt: skip
        args = (
            *operands, h0 if h0 is not None else final, o, final, states if keep else o, pseudo if keep else o, scale,
            length, heads, key_dim, value_dim, n_chunks, ns, cps, 0,
        )  # fmt: skip
        meta = dict(flags, HAS_H0=initial_state is not None, STORE_HT=output_final_state, SEG=ns > 1)
        if autotuning() and ns == 1:
            grid = lambda m: (cdiv(value_dim, m["BV"]), batch * heads)  # noqa: E731
            tuned(_state_fwd_kernel, "state_fwd", STATE_CONFIGS, True)[grid](*args, **meta)
        else:
            _state_fwd_kernel[(cdiv(value_dim, cfg["BV"]), batch * heads * ns)](
                *args, **meta, BV=cfg["BV"], num_warps=cfg["num_warps"], num_stages=cfg["num_stages"]
            )
    if split_o:
        launch_output(q, gc, a, states, pseudo, o, scale, chunk_size)
    if not save:
        states = pseudo = None
    return {"o": o, "final_state": final if output_final_state else None, "states": states, "pseudo": pseudo}


def _state_pieces(operands, outputs, initial_state, scale, pieces, ready, const, cfg, n_chunks) -> None:
    """One state-pass launch per chunk range of ``pieces``: piece 0 starts from ``initial_state`` (or zero), every
    later one from the state the one before stored in the final-state buffer (read and rewritten in place: each
    program owns its [K, BV] tile). ``ready(i)`` runs before launch i (it makes the stream wait for that piece's
    prep)."""
    k = operands[1]
    o, final, states, pseudo = outputs
    batch, length, heads, key_dim = k.shape
    value_dim = o.shape[-1]
    keep = states is not None
    for i, (c0, c1) in enumerate(pieces):
        if ready is not None:
            ready(i)
        first = i == 0
        h0 = initial_state if first and initial_state is not None else final
        args = (
            *operands, h0, o, final, states if keep else o, pseudo if keep else o, scale, length, heads, key_dim,
            value_dim, n_chunks, 1, c1 - c0, c0,
        )  # fmt: skip
        _state_fwd_kernel[(cdiv(value_dim, cfg["BV"]), batch * heads)](
            *args, **const, HAS_H0=not first or initial_state is not None, STORE_HT=True, BV=cfg["BV"],
            num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
        )  # fmt: skip


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
        a [B, T, H, C], w [B, T, H, K], t_inv [B, T, H, C] fp32, states, pseudo (the last three None unless
        ``save``), and gc,
        the chunk-local cumulative log-decay (shape of g, fp32) that the kernels read.
    """
    gc = chunk_local_cumsum(g, chunk_size)
    batch, length, heads, key_dim = k.shape
    n_chunks = cdiv(length, chunk_size)
    narrow = intermediate_dtype(q.dtype, key_dim).itemsize < 4
    ns = _segment_plan(n_chunks, batch * heads, key_dim, v.shape[-1], "state", narrow)[0]
    pieces = piece_ranges(n_chunks, overlap_pieces() if ns == 1 else 1)
    bound = functools.partial(launch_prep, q, k, v, gc, beta, scale, chunk_size, keep_t=save)
    prep, ready = prep_ahead(bound, q.device, pieces) if len(pieces) > 1 else (bound(), None)
    out = launch_state_fwd(
        q, k, gc, prep, v.shape[-1], scale, initial_state, output_final_state, save, chunk_size, pieces, ready
    )
    return {**out, "t_inv": prep["t_inv"], "a": prep["a"], "w": prep["w"], "gc": gc}
