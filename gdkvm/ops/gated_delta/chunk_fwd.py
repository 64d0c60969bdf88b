"""Triton forward of the chunkwise gated delta rule (token rule): two launches.

1. ``_prep_kernel``, one program per (chunk, batch*head), fully parallel: chunk-local cumulative log-decay G (fp32),
   the decayed key Gram L = strict-lower(beta_i k_i^T diag(e^{G_i - G_j}) k_j), its UT inverse T = (I + L)^-1 (by
   recursive doubling on tensor cores at 4+ warps; at 2 warps by forward substitution on 16x16 diagonal blocks in
   fp32, then a block merge (I - N)(I + N^2) T_diag with N = T_diag L_off; see ``launch.solve_mode``),
   w = T diag(beta) (K * e^G), u = T diag(beta) V, and the causal query-key scores A = scale (Q K^T * e^{G_i - G_j}).
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

import torch
import triton
import triton.language as tl

from gdkvm.ops._host import cdiv
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
from gdkvm.ops.gated_delta.chunk_seg import _seg_fwd_kernel, segment_starts
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
    prec,
    solve_mode,
    split16,
    tuned,
)


@triton.jit
def _merge_blocks(t_diag, l_off, BT: tl.constexpr, BS: tl.constexpr, PREC: tl.constexpr):
    """(I + L)^-1 from T_diag (the inverted BS x BS diagonal blocks, zero elsewhere) and L_off (L off those blocks):
    T = (I - N)(I + N^2) T_diag with N = T_diag L_off, exact while BT / BS <= 4. [BT, BT] fp32."""
    if BT > BS:
        n = tl.dot(t_diag, l_off, input_precision=PREC)
        m = t_diag + tl.dot(tl.dot(n, n, input_precision=PREC), t_diag, input_precision=PREC)
        return m - tl.dot(n, m, input_precision=PREC)
    else:
        return t_diag


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
    t_inv = _merge_blocks(tl.where(same, t_full, 0.0), tl.where(same, 0.0, t_full), BT, BS, PREC)
    tl.debug_barrier()
    return t_inv


@triton.jit
def _solve_unit_lower_regs(lower, BT: tl.constexpr, BS: tl.constexpr, PREC: tl.constexpr):
    """(I + L)^-1 of a strictly lower [BT, BT] fp32 tile L, all in registers (``_solve_unit_lower`` without the
    scratch round trip): the NB = BT / BS diagonal blocks are cut out as one [NB, BS, BS] tile, solved together by
    forward substitution (BS - 1 steps), put back on the diagonal and merged the same way."""
    NB: tl.constexpr = BT // BS
    o_i = tl.arange(0, BT)
    o_s = tl.arange(0, BS)
    o_b = tl.arange(0, NB)
    same = (o_i[:, None] // BS) == (o_i[None, :] // BS)
    diag4 = o_b[:, None, None, None] == o_b[None, None, :, None]  # [NB, 1, NB, 1]: block row == block column
    l_b = tl.sum(tl.where(diag4, tl.reshape(lower, (NB, BS, NB, BS)), 0.0), axis=2)  # [NB, BS, BS]
    eye = tl.where(o_s[:, None] == o_s[None, :], 1.0, 0.0)
    t_b = tl.zeros([NB, BS, BS], dtype=tl.float32)
    for r in range(1, BS):
        row = (o_s == r)[None, :, None]
        a = tl.sum(tl.where(row, l_b, 0.0), axis=1)  # row r of each block's L, [NB, BS]
        new = -tl.sum(a[:, :, None] * (t_b + eye[None, :, :]), 1)
        t_b = tl.where(row, new[:, None, :], t_b)
    t_b += eye[None, :, :]
    t_diag = tl.reshape(tl.where(diag4, t_b[:, :, None, :], 0.0), (BT, BT))
    return _merge_blocks(t_diag, tl.where(same, 0.0, lower), BT, BS, PREC)


@triton.jit
def _solve_unit_lower_doubling(lower, BT: tl.constexpr, PREC: tl.constexpr):
    """(I + L)^-1 of a strictly lower [BT, BT] fp32 tile L by recursive doubling on tensor cores, no reductions:
    T starts as the inverse of the 1 x 1 diagonal blocks (I); each level s = 1, 2, .., BT / 2 turns the inverted
    s-blocks into inverted 2s-blocks with T <- T - T L_s T, where L_s is L on the lower-left s-block of each 2s-block
    ([[A, 0], [C, B]]^-1 = [[A^-1, 0], [-B^-1 C A^-1, B^-1]]). Level 1 needs no product (T = I - L_1): 2 log2(BT) - 2
    products of [BT, BT] tiles, exact in exact arithmetic (simulated error with TF32 products: about that of the
    substitution + merge path)."""
    o_i = tl.arange(0, BT)
    t_inv = tl.where(o_i[:, None] == o_i[None, :], 1.0, 0.0) - tl.where(
        (o_i[:, None] // 2 == o_i[None, :] // 2) & (o_i[:, None] != o_i[None, :]), lower, 0.0
    )
    for level in tl.static_range(1, 6):  # span 2 .. 32: every level below BT <= 64
        span = 1 << level
        if span < BT:
            block = (o_i[:, None] // (2 * span) == o_i[None, :] // (2 * span)) & (
                o_i[:, None] // span != o_i[None, :] // span
            )
            l_s = tl.where(block, lower, 0.0)
            t_inv = t_inv - tl.dot(tl.dot(t_inv, l_s, input_precision=PREC), t_inv, input_precision=PREC)
    return t_inv


@triton.jit
def _prep_kernel(
    q_ptr, k_ptr, v_ptr, gc_ptr, beta_ptr, t_ptr, a_ptr, w_ptr, u_ptr, qw_ptr, ou_ptr, scale, T, H, K, V,
    PER_CHANNEL: tl.constexpr, BT: tl.constexpr, BS: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PREC: tl.constexpr, SOLVE: tl.constexpr, FOLD: tl.constexpr, STORE_T: tl.constexpr,
):  # fmt: skip
    """Per chunk: G, L, T = (I + L)^-1 (fp32, kept for the backward); A, w and u in the dtype of their buffers (the
    intermediate dtype, see ``intermediate_dtype``). With FOLD also the folded output terms of ``_state_fwd_kernel``:
    Q' = scale (Q * e^G) - A w [BT, K] and A u [BT, V], so that the state pass computes o = Q' S + A u."""
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
    G, _ = _gate_load(gc_ptr, th, mrow, cols, mcol, K, PER_CHANNEL)
    if PER_CHANNEL:
        p_kk, p_qk = _pairwise_channel(q_ptr, k_ptr, gc_ptr, th, mrow, K, BT)
        tl.store(a_ptr + p_t, (scale * p_qk).to(a_ptr.dtype.element_ty), mask=m_t)
    else:
        decay = tl.exp(tl.where(o_i[:, None] >= o_i[None, :], G[:, None] - G[None, :], float("-inf")))
        qt = tl.load(q_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
        p_qk = tl.dot(qt, tl.trans(kt)) * decay
        tl.store(a_ptr + p_t, (p_qk * scale).to(a_ptr.dtype.element_ty), mask=m_t)
        p_kk = tl.dot(kt, tl.trans(kt)) * decay
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
    q_ptr, k_ptr, gc_ptr, w_ptr, u_ptr, a_ptr, ou_ptr, h0_ptr, o_ptr, ht_ptr, hs_ptr, us_ptr, scale, T, H, K, V, NT,
    NS, CPS, PER_CHANNEL: tl.constexpr, HAS_H0: tl.constexpr, STORE_HT: tl.constexpr, SAVE: tl.constexpr,
    EMIT_O: tl.constexpr, FOLD: tl.constexpr, SEG: tl.constexpr, SPLIT16: tl.constexpr, KEY_DECAY: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):  # fmt: skip
    """Sequential over chunks for one (value tile, batch*head, segment): o (EMIT_O), the final state and (SAVE)
    per-chunk states/U. With SEG the chunks [i_s * CPS, (i_s + 1) * CPS) of segment i_s start from the state that
    ``_seg_combine_kernel`` stored in h0_ptr ([B*H*NS, K, V] fp32); otherwise NS = 1 and h0_ptr is [B*H, K, V].
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
    c_end = tl.minimum(NT, (i_s + 1) * CPS)
    for i_t in range(i_s * CPS, c_end):
        th, mrow = _chunk_rows(i_b, i_t, i_h, T, H, BT)
        m_k = mrow[:, None] & mcol[None, :]
        m_v = mrow[:, None] & (cv < V)[None, :]
        if SAVE:
            chunk_bh = (i_b.to(tl.int64) * NT + i_t) * H + i_h
            tl.store(hs_ptr + chunk_bh * K * V + p_s, state.to(hs_ptr.dtype.element_ty), mask=m_s)
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
) -> dict[str, torch.Tensor | None]:
    """Launch 1 (parallel over chunks): t_inv [B, T, H, C] fp32 (None unless ``keep_t``: only the backward reads it),
    a [B, T, H, C], w [B, T, H, K], u [B, T, H, V] in the intermediate dtype; with ``GDKVM_TOKEN_O=folded`` also
    q_fold [B, T, H, K] and a_u [B, T, H, V] (same dtype). Inputs contiguous; gc fp32 [B, T, H] or [B, T, H, K], the
    chunk-local cumulative log-decay (``chunk_local_cumsum``), as in every launch below."""
    batch, length, heads, key_dim = k.shape
    value_dim = v.shape[-1]
    n_chunks = cdiv(length, chunk_size)
    check_precision_mode(q.device)
    inter = intermediate_dtype(q.dtype, key_dim)
    cfg = heuristic("prep", key_dim, value_dim, batch * heads, inter.itemsize < 4)
    solve = ("scratch", "regs", "doubling").index(solve_mode(cfg["num_warps"]))
    store_t = keep_t or solve == 0  # the scratch solve reads its rows back from the T buffer
    t_inv = torch.empty(batch, length, heads, chunk_size, device=q.device, dtype=torch.float32) if store_t else None
    a = torch.empty(batch, length, heads, chunk_size, device=q.device, dtype=inter)
    w = torch.empty(k.shape, device=q.device, dtype=inter)
    u = torch.empty(v.shape, device=q.device, dtype=inter)
    fold = output_mode() == "folded"
    q_fold = torch.empty(k.shape, device=q.device, dtype=inter) if fold else w
    a_u = torch.empty(v.shape, device=q.device, dtype=inter) if fold else u
    meta = dict(
        PER_CHANNEL=gc.dim() == 4, BT=chunk_size, BS=min(16, chunk_size), BK=block_k(key_dim), BV=cfg["BV"],
        PREC=prec(q.dtype), SOLVE=solve, FOLD=fold, STORE_T=store_t,
    )  # fmt: skip
    t_arg = t_inv if store_t else a  # never written without STORE_T
    args = (q, k, v, gc, beta, t_arg, a, w, u, q_fold, a_u, scale, length, heads, key_dim, value_dim)
    grid = (n_chunks, batch * heads)
    if autotuning():
        tuned(_prep_kernel, "prep", PARALLEL_CONFIGS, False)[grid](*args, **meta)
    else:
        _prep_kernel[grid](*args, **meta, num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    return {"t_inv": t_inv if keep_t else None, "a": a, "w": w, "u": u,
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
) -> dict[str, torch.Tensor | None]:
    """Launch 2 (sequential over chunks): o [B, T, H, V] (dtype of q), the final state [B, H, K, V] fp32 (or None) and,
    with ``save``, the states entering each chunk [B, NT, H, K, V] and U [B, T, H, V] (intermediate dtype).
    ``GDKVM_TOKEN_O=split`` moves o to a parallel kernel; ``GDKVM_TOKEN_SEGMENTS`` cuts the chunks into segments
    scanned in parallel (see ``n_segments``); both are off by default."""
    batch, length, heads, key_dim = k.shape
    n_chunks = cdiv(length, chunk_size)
    w, u, a = prep["w"], prep["u"], prep["a"]
    split_o = output_mode() == "split"
    fold = "q_fold" in prep
    keep = save or split_o
    o = torch.empty(batch, length, heads, value_dim, device=q.device, dtype=q.dtype)
    final = torch.empty(batch, heads, key_dim, value_dim, device=q.device, dtype=torch.float32)
    states = torch.empty(batch, n_chunks, heads, key_dim, value_dim, device=q.device, dtype=w.dtype) if keep else None
    pseudo = torch.empty(batch, length, heads, value_dim, device=q.device, dtype=w.dtype) if keep else None
    hilo = split16(q.dtype, w.dtype, "fwd")
    const = dict(PER_CHANNEL=gc.dim() == 4, SPLIT16=hilo, KEY_DECAY=key_decay(w.dtype), BT=chunk_size,
                 BK=block_k(key_dim))  # fmt: skip
    ns, cps, cfg = _segment_plan(n_chunks, batch * heads, key_dim, value_dim, "state", w.dtype.itemsize < 4)
    h0 = initial_state
    if ns > 1:
        meta = {"scalars": (length, heads, key_dim, value_dim, n_chunks), "const": const}
        h0 = segment_starts(
            _seg_fwd_kernel, (k, gc, w, u), initial_state, batch * heads, key_dim, value_dim, ns, cps, cfg, meta,
            False, q.device,
        )  # fmt: skip
    args = (
        prep["q_fold"] if fold else q, k, gc, w, u, a, prep["a_u"] if fold else u, h0 if h0 is not None else final, o,
        final,
        states if keep else o, pseudo if keep else o, scale, length, heads, key_dim, value_dim, n_chunks, ns, cps,
    )  # fmt: skip
    meta = dict(
        **const, HAS_H0=initial_state is not None, STORE_HT=output_final_state, SAVE=keep, EMIT_O=not split_o,
        FOLD=fold, SEG=ns > 1,
    )  # fmt: skip
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
    prep = launch_prep(q, k, v, gc, beta, scale, chunk_size, keep_t=save)
    out = launch_state_fwd(q, k, gc, prep, v.shape[-1], scale, initial_state, output_final_state, save, chunk_size)
    return {**out, "t_inv": prep["t_inv"], "a": prep["a"], "w": prep["w"], "gc": gc}
