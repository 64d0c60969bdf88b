"""Triton forward of the frame rule: a parallel Gram pre-pass, the serial state recurrence, a parallel readout.

The state recurrence is the only serial part. Everything that does not depend on the state (K_t^T K_t and K_t^T V_t
for all frames, the GEMMs over the N pixels) runs first as one parallel launch on tensor cores (``triton_gram``),
the recurrence then walks all T frames in one launch (``fwd_parallel_kernel``: one program per batch element and
value slice, each also carrying the per-head gate projections; ``fwd_recurrence_kernel``, the fallback: one program
per batch element), and the readout O_t = K_t S_t runs in parallel over (frame, pixel tile, value tile). See
README.md.

States are written for every frame to ``states [B, T + 1, Dk, Dv]`` (slot 0 = initial state, slot t + 1 = S_t), which
is the readout's input and the backward's checkpoint.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gdkvm.ops._host import cdiv, next_power_of_2
from gdkvm.ops.frame.overlap import (
    drop_counters,
    launch_overlapped,
    overlap_counters,
    overlap_fits,
    readout_fits,
)
from gdkvm.ops.frame.tiles import (
    dot3,
    expand_gates,
    gate_logits_tile,
    head_projections,
    last_arrival,
    signal_count,
    softplus,
    split_tf32,
    state_slots,
    wait_count,
    wait_frames,
)
from gdkvm.ops.frame.triton_gram import gram
from gdkvm.ops.frame.triton_lean import fwd_lean_kernel
from gdkvm.ops.frame.tuning import (
    TUNING,
    block_sizes,
    fast_layout,
    fit,
    launch_planned,
    pad_k,
    pixel_precision,
    planned,
    safe_warps,
    serial_fast_precision,
    serial_precision,
    spin_sleep,
    walk_reads,
    walker_slice,
)


@triton.jit(do_not_specialize=["T", "H", "HD"])  # sizes that vary between calls: one compile
def fwd_recurrence_kernel(
    kk_ptr, kv_ptr, h0_ptr, wb_ptr, wa_ptr, alog_ptr, dt_ptr, states_ptr, T, DK, DV, H, HD,
    HAS_H0: tl.constexpr, IN_PLACE: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BH: tl.constexpr,
    HEAD_TILE: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Walk all T frames of one batch element: S_t from S_{t-1}, K_t^T K_t and K_t^T V_t.

    One sweep over the value tiles per frame: each new tile of S_t is stored and at once folded into the gate logits
    S_t W of the next frame. Grid: (B,). kk [B, T, DK, DK], kv [B, T, DK, DV], h0 [B, DK, DV], all fp32.
    Checkpoint layout: states [B, T + 1, DK, DV] (slot 0 = h0, slot t + 1 = S_t). IN_PLACE (no backward): S_t
    overwrites kv[b, t] (states_ptr is ignored), which saves a state-sized buffer per frame.
    """
    b = tl.program_id(0).to(tl.int64)
    rk = tl.arange(0, BK)
    rh = tl.arange(0, BH)
    rate = tl.exp(tl.load(alog_ptr + rh, mask=rh < H, other=0.0))
    dt = tl.load(dt_ptr + rh, mask=rh < H, other=0.0)
    kv_base = kv_ptr + b * T * DK * DV
    st_base, slot = state_slots(kv_base, states_ptr, b, T, DK, DV, IN_PLACE)
    t_start = 1
    prev = st_base + slot * DK * DV  # S_0 = K_0^T V_0
    if HAS_H0:
        t_start = 0
        prev = h0_ptr + b * DK * DV
    pb = tl.zeros((BK, BH), dtype=tl.float32)
    pa = tl.zeros((BK, BH), dtype=tl.float32)
    for j0 in range(0, DV, BV):
        rv = j0 + tl.arange(0, BV)
        offs = rk[:, None] * DV + rv[None, :]
        mask = (rk[:, None] < DK) & (rv[None, :] < DV)
        if HAS_H0:
            s = tl.load(prev + offs, mask=mask, other=0.0)
        else:
            s = tl.load(kv_base + offs, mask=mask, other=0.0)
        if not IN_PLACE:
            tl.store(st_base + t_start * DK * DV + offs, s, mask=mask)  # slot 0 = h0, or slot 1 = S_0
        db, da = gate_logits_tile(s, wb_ptr, wa_ptr, j0, DV, H, BV, BH, PREC)
        pb += db
        pa += da
    tl.debug_barrier()
    gmask = (rk[:, None] < DK) & (rk[None, :] < DK)
    for t in range(t_start, T):
        out = st_base + (t + slot) * DK * DV
        beta = tl.sigmoid(pb)
        alpha = tl.exp(-rate[None, :] * softplus(pa + dt[None, :]))
        gram = tl.load(kk_ptr + (b * T + t) * DK * DK + rk[:, None] * DK + rk[None, :], mask=gmask, other=0.0)
        pb = tl.zeros((BK, BH), dtype=tl.float32)
        pa = tl.zeros((BK, BH), dtype=tl.float32)
        for j0 in range(0, DV, BV):
            rv = j0 + tl.arange(0, BV)
            offs = rk[:, None] * DV + rv[None, :]
            mask = (rk[:, None] < DK) & (rv[None, :] < DV)
            s = tl.load(prev + offs, mask=mask, other=0.0)
            kv = tl.load(kv_base + t * DK * DV + offs, mask=mask, other=0.0)
            bx, ax = expand_gates(beta, alpha, j0, DV, HD, BV, BH, HEAD_TILE, PREC)
            gs = tl.dot(gram, s, input_precision=PREC)
            s_new = ax * (s - bx * gs) + bx * kv
            if IN_PLACE:
                tl.debug_barrier()  # every thread has read its kv elements before any overwrites them
            tl.store(out + offs, s_new, mask=mask)
            db, da = gate_logits_tile(s_new, wb_ptr, wa_ptr, j0, DV, H, BV, BH, PREC)
            pb += db
            pa += da
        prev = out
        tl.debug_barrier()


@triton.jit
def _frame_inputs(kk_ptr, r_b, kv_b, b, t, T, DK, DV, BQ: tl.constexpr, g_offs, g_mask, q_offs, q_mask, s_offs, s_mask):
    """Frame t's inputs of ``fwd_parallel_kernel``: G_t, the two blocks of R_t and the slice of U_t = K_t^T V_t, read
    through L2 (``.cg``: in the fused forward other programs wrote them during this launch)."""
    gram = tl.load(kk_ptr + (b * T + t) * DK * DK + g_offs, mask=g_mask, other=0.0, cache_modifier=".cg")
    r_t = r_b + t * DK * 2 * BQ
    rb = tl.load(r_t + q_offs, mask=q_mask, other=0.0, cache_modifier=".cg")
    ra = tl.load(r_t + BQ + q_offs, mask=q_mask, other=0.0, cache_modifier=".cg")
    u = tl.load(kv_b + t * DK * DV + s_offs, mask=s_mask, other=0.0, cache_modifier=".cg")
    return gram, rb, ra, u


@triton.jit
def _walk_frame(
    kk_ptr, r_b, kv_b, st_base, b, t, slot, T, DK, DV, qb, qa, s, msum, rate, dt, own, rate_h, dt_h, own_h,
    g_offs, g_mask, q_offs, q_mask, s_offs, s_mask, IN_PLACE: tl.constexpr, BK: tl.constexpr, BH: tl.constexpr,
    PREC: tl.constexpr, PSUM_DOT: tl.constexpr, NHS: tl.constexpr, head0, hcol,
):  # fmt: skip
    """Frame t of ``walk_slice``: gates from Q_{t-1}, then Q_t and this slice of S_t (stored at slot t + slot)."""
    BQ: tl.constexpr = BH * BH
    # frame t's inputs, all up front (loading frame t + 1's during frame t measured slower on an H100: 0.251 vs
    # 0.196 ms at B10 T10 N256)
    gram, rb_t, ra_t, u_t = _frame_inputs(
        kk_ptr, r_b, kv_b, b, t, T, DK, DV, BQ, g_offs, g_mask, q_offs, q_mask, s_offs, s_mask
    )
    if PSUM_DOT:
        beta = tl.sigmoid(tl.dot(qb, msum, input_precision=PREC))
        alpha = tl.exp(-rate * softplus(tl.dot(qa, msum, input_precision=PREC) + dt))
        beta_s = tl.sum(tl.where(own, beta, 0.0), axis=1)[:, None]
        alpha_s = tl.sum(tl.where(own, alpha, 0.0), axis=1)[:, None]
    else:
        beta_h = tl.sigmoid(tl.sum(tl.reshape(qb, (BK, BH, BH)), axis=1))  # [BK, BH]: S W_beta
        alpha_h = tl.exp(-rate_h * softplus(tl.sum(tl.reshape(qa, (BK, BH, BH)), axis=1) + dt_h))
        beta_s = tl.sum(tl.where(own_h, beta_h, 0.0), axis=1)[:, None]  # [BK, 1]: the slice's head
        alpha_s = tl.sum(tl.where(own_h, alpha_h, 0.0), axis=1)[:, None]
        for i in tl.static_range(1, NHS):  # a slice of NHS heads: [BK, BV], each column its head's gates
            sel = tl.arange(0, BH)[None, :] == head0 + i
            beta_s = tl.where(hcol == head0 + i, tl.sum(tl.where(sel, beta_h, 0.0), axis=1)[:, None], beta_s)
            alpha_s = tl.where(hcol == head0 + i, tl.sum(tl.where(sel, alpha_h, 0.0), axis=1)[:, None], alpha_s)
        beta = tl.reshape(tl.broadcast_to(beta_h[:, :, None], (BK, BH, BH)), (BK, BQ))
        alpha = tl.reshape(tl.broadcast_to(alpha_h[:, :, None], (BK, BH, BH)), (BK, BQ))
    gq = tl.dot(gram, qb, input_precision=PREC)
    qb = alpha * (qb - beta * gq) + beta * rb_t
    gq = tl.dot(gram, qa, input_precision=PREC)
    qa = alpha * (qa - beta * gq) + beta * ra_t
    gs = tl.dot(gram, s, input_precision=PREC)
    s = alpha_s * (s - beta_s * gs) + beta_s * u_t
    if IN_PLACE:
        tl.debug_barrier()  # every thread has read its U_t elements before any overwrites them
    tl.store(st_base + (t + slot) * DK * DV + s_offs, s, mask=s_mask)
    return qb, qa, s


@triton.jit
def walk_slice(
    kk_ptr, kv_ptr, r_ptr, h0_ptr, wb_ptr, wa_ptr, alog_ptr, dt_ptr, states_ptr, flag_ptr, b, j0, T, DK, DV, H, HD,
    GT, HAS_H0: tl.constexpr, IN_PLACE: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BH: tl.constexpr,
    PREC: tl.constexpr, PSUM_DOT: tl.constexpr, SYNC: tl.constexpr, LOOKAHEAD: tl.constexpr, NHS: tl.constexpr = 1,
):  # fmt: skip
    """All T frames of value slice j0 .. j0+BV-1 of batch element b (int64); see ``fwd_parallel_kernel``.

    SYNC (fused forward, ``triton_fwd_fused``): 0 none; otherwise wait until flag[b, t, 0] counts GT finished Gram
    tasks before reading frame t's inputs, and count this slice's S_t into flag[b, t, 1] after storing it (SYNC 1:
    every frame; SYNC 2: the last frame only); one wait reads the counters of LOOKAHEAD frames. flag: int32 [B, T, 2].
    """
    BQ: tl.constexpr = BH * BH
    rk = tl.arange(0, BK)
    rv = j0 + tl.arange(0, BV)
    rq = tl.arange(0, BQ)
    qh = rq // BH
    s_offs = rk[:, None] * DV + rv[None, :]
    s_mask = (rk[:, None] < DK) & (rv[None, :] < DV)
    q_offs = rk[:, None] * 2 * BQ + rq[None, :]
    q_mask = (rk[:, None] < DK) & (qh[None, :] < H) & ((rq[None, :] % BH) < H)
    g_offs = rk[:, None] * DK + rk[None, :]
    g_mask = (rk[:, None] < DK) & (rk[None, :] < DK)
    msum = ((rq[:, None] % BH) == qh[None, :]).to(tl.float32)  # (Q Msum)[:, h*BH + h'] = sum_h2 Q[:, h2*BH + h]
    rate = tl.exp(tl.load(alog_ptr + qh, mask=qh < H, other=0.0))[None, :]
    dt = tl.load(dt_ptr + qh, mask=qh < H, other=0.0)[None, :]
    own = (rq == (j0 // HD) * BH)[None, :]  # a column of block "head of this slice"
    rh = tl.arange(0, BH)
    rate_h = tl.exp(tl.load(alog_ptr + rh, mask=rh < H, other=0.0))[None, :]
    dt_h = tl.load(dt_ptr + rh, mask=rh < H, other=0.0)[None, :]
    own_h = (rh == j0 // HD)[None, :]
    hcol = (rv // HD)[None, :]  # head of each column (a slice holds NHS = BV / HD heads, or lies inside one)
    kv_b = kv_ptr + b * T * DK * DV
    r_b = r_ptr + b * T * DK * 2 * BQ
    flag_b = flag_ptr + b * T * 2
    st_base, slot = state_slots(kv_b, states_ptr, b, T, DK, DV, IN_PLACE)
    if HAS_H0:
        t_start = 0
        h0_b = h0_ptr + b * DK * DV
        s = tl.load(h0_b + s_offs, mask=s_mask, other=0.0)
        qb, qa = head_projections(h0_b, wb_ptr, wa_ptr, DK, DV, H, HD, BK, BV, BH, PREC)
    else:
        t_start = 1
        if SYNC:
            ready = wait_frames(flag_b, 0, T, GT, LOOKAHEAD)
        s = tl.load(kv_b + s_offs, mask=s_mask, other=0.0, cache_modifier=".cg")  # S_0 = K_0^T V_0
        qb = tl.load(r_b + q_offs, mask=q_mask, other=0.0, cache_modifier=".cg")
        qa = tl.load(r_b + BQ + q_offs, mask=q_mask, other=0.0, cache_modifier=".cg")
    if not IN_PLACE:
        tl.store(st_base + t_start * DK * DV + s_offs, s, mask=s_mask)  # slot 0 = h0, or slot 1 = S_0
    if SYNC == 1 and not HAS_H0:
        signal_count(flag_b + 1)  # S_0 is ready for its readout
    if SYNC:  # not pipelined: no load of frame t + 1 may move above its wait
        ready = t_start  # frames before it have all their Gram tasks counted
        for t in tl.range(t_start, T, num_stages=1):
            if t >= ready:
                ready = wait_frames(flag_b, t, T, GT, LOOKAHEAD)
            qb, qa, s = _walk_frame(
                kk_ptr, r_b, kv_b, st_base, b, t, slot, T, DK, DV, qb, qa, s, msum, rate, dt, own, rate_h, dt_h, own_h,
                g_offs, g_mask, q_offs, q_mask, s_offs, s_mask, IN_PLACE, BK, BH, PREC, PSUM_DOT, NHS, j0 // HD, hcol,
            )  # fmt: skip
            if SYNC == 1:
                signal_count(flag_b + t * 2 + 1)
    else:
        for t in range(t_start, T):
            qb, qa, s = _walk_frame(
                kk_ptr, r_b, kv_b, st_base, b, t, slot, T, DK, DV, qb, qa, s, msum, rate, dt, own, rate_h, dt_h, own_h,
                g_offs, g_mask, q_offs, q_mask, s_offs, s_mask, IN_PLACE, BK, BH, PREC, PSUM_DOT, NHS, j0 // HD, hcol,
            )  # fmt: skip
    if SYNC == 2:
        signal_count(flag_b + (T - 1) * 2 + 1)


@triton.jit(do_not_specialize=["T", "H", "HD"])  # sizes that vary between calls: one compile
def fwd_parallel_kernel(
    kk_ptr, kv_ptr, r_ptr, h0_ptr, wb_ptr, wa_ptr, alog_ptr, dt_ptr, states_ptr, T, DK, DV, H, HD,
    HAS_H0: tl.constexpr, IN_PLACE: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BH: tl.constexpr,
    PREC: tl.constexpr, PSUM_DOT: tl.constexpr, NHS: tl.constexpr = 1,
):  # fmt: skip
    """All T frames of value slice j (BV columns inside one head, or NHS = BV / HD whole heads) of batch element b.
    Grid: (B, DV / BV).

    The gates of frame t need S_{t-1} W over all DV columns, which no single slice has. So every program also carries
    the per-head gate projections Q[k, h * BH + h'] = sum over the columns c of head h of S[k, c] W[c, h'] (one block
    for W_beta, one for W_alpha; S W = sum over h of Q). Gates are constant over a head's columns, so Q follows the
    state's own rule with R_t = per-head projections of K_t^T V_t (from the pre-pass):
        Q_t = A (Q_{t-1} - B (G_t Q_{t-1})) + B R_t     (A, B: the head-h gates on the columns of block h)
    and no program needs another's data. P = Q Msum puts S W[:, h] on every column of block h (Msum is 0/1).
    kk [B,T,DK,DK], kv [B,T,DK,DV], r [B,T,DK,2,BH*BH], h0 [B,DK,DV], states as in fwd_recurrence_kernel.
    """
    walk_slice(
        kk_ptr, kv_ptr, r_ptr, h0_ptr, wb_ptr, wa_ptr, alog_ptr, dt_ptr, states_ptr, kk_ptr,
        tl.program_id(0).to(tl.int64), tl.program_id(1) * BV, T, DK, DV, H, HD, 0,
        HAS_H0, IN_PLACE, BK, BV, BH, PREC, PSUM_DOT, 0, 1, NHS,
    )  # fmt: skip


@triton.jit
def _readout_cols(
    kt, kt_lo, s_base, o_ptr, bt, rn, c0, N, DK, DV, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr
):  # fmt: skip
    """Store K_t S_t for the rows rn and columns c0 .. c0+BV-1; kt [BN, BK] fp32 (K_t's rows rn), or for PREC "hand3"
    its TF32 split (kt, kt_lo: ``split_tf32``) for ``dot3``."""
    rk = tl.arange(0, BK)
    rv = c0 + tl.arange(0, BV)
    s_mask = (rk[:, None] < DK) & (rv[None, :] < DV)
    s = tl.load(s_base + rk[:, None] * DV + rv[None, :], mask=s_mask, other=0.0, cache_modifier=".cg")
    if PREC == "hand3":
        o = dot3(kt, kt_lo, s)
    else:
        o = tl.dot(kt, s, input_precision=PREC)
    omask = (rn[:, None] < N) & (rv[None, :] < DV)
    tl.store(o_ptr + bt * N * DV + rn[:, None] * DV + rv[None, :], o.to(o_ptr.dtype.element_ty), mask=omask)


@triton.jit
def readout_tile(
    k_ptr, states_ptr, o_ptr, bt, n0, v0, VCOLS, T, N, DK, DV, SLOTS,
    BK: tl.constexpr, BN: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr, LOOP: tl.constexpr,
    flag_ptr, NS, WAIT: tl.constexpr, SLEEP: tl.constexpr = 0,
):  # fmt: skip
    """o[b, t] = K_t S_t on rows n0 .. n0+BN-1 and columns v0 .. v0+BV-1 of frame bt = b * T + t (int64), or with
    LOOP columns v0 .. v0+VCOLS-1, BV at a time, K_t's rows loaded (and for PREC "hand3" split) once; layouts as in
    ``readout_kernel``. The state is read through L2 (``.cg``: in the fused forward another program wrote it). WAIT:
    K_t's rows are loaded first, then the int32 counter at flag_ptr + 2 bt + 1 is awaited until it reaches NS (SLEEP:
    nanoseconds between polls, ``tiles.wait_count``)."""
    rn = n0 + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    kt = tl.load(
        k_ptr + bt * N * DK + rn[:, None] * DK + rk[None, :], mask=(rn[:, None] < N) & (rk[None, :] < DK), other=0.0
    ).to(tl.float32)
    kt_lo = kt
    if PREC == "hand3":
        kt, kt_lo = split_tf32(kt)
    if WAIT:
        wait_count(flag_ptr + bt * 2 + 1, NS, SLEEP)
    s_base = states_ptr + ((bt // T) * SLOTS + bt % T + SLOTS - T) * DK * DV
    if LOOP:
        for c0 in range(v0, tl.minimum(v0 + VCOLS, DV), BV):
            _readout_cols(kt, kt_lo, s_base, o_ptr, bt, rn, c0, N, DK, DV, BK, BV, PREC)
    else:
        _readout_cols(kt, kt_lo, s_base, o_ptr, bt, rn, v0, N, DK, DV, BK, BV, PREC)


@triton.jit(do_not_specialize=["T", "N", "SLOTS", "B"])  # sizes that vary between calls: one compile
def readout_kernel(
    k_ptr, states_ptr, o_ptr, T, N, DK, DV, SLOTS, VCOLS, flag_ptr, B, NS,
    BK: tl.constexpr, BN: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr, LOOP: tl.constexpr = False,
    WAIT: tl.constexpr = False, SLEEP: tl.constexpr = 0,
):  # fmt: skip
    """o[b, t] = K_t S_t for one (frame, pixel tile, value tile). Grid: (B*T, cdiv(N, BN), cdiv(DV, VCOLS)); with
    LOOP a program's VCOLS columns BV at a time (K_t's rows loaded once), else VCOLS = BV.

    k [B, T, N, DK], o [B, T, N, DV] (dtype of k); states [B, SLOTS, DK, DV] fp32 with S_t at slot t + SLOTS - T.
    WAIT (the readout beside the walk, ``frame_fwd``'s overlap): program_id(0) = t * B + b (frames in order), and a
    program waits until the walk's NS value slices of S_t are counted in the int32 flag[b, t, 1]; the last of frame
    t's programs to finish (counted in flag[2 B T + b T + t]) resets that counter to 0 (``overlap_counters``). Without
    it flag_ptr, B and NS are unused and program_id(0) = b * T + t.
    """
    bt = tl.program_id(0).to(tl.int64)
    if WAIT:
        bt = (bt % B) * T + bt // B
    readout_tile(
        k_ptr, states_ptr, o_ptr, bt, tl.program_id(1) * BN, tl.program_id(2) * VCOLS,
        VCOLS, T, N, DK, DV, SLOTS, BK, BN, BV, PREC, LOOP, flag_ptr, NS, WAIT, SLEEP,
    )  # fmt: skip
    if WAIT:  # every slice has counted S_t, every program of the frame has read it: reset
        if last_arrival(flag_ptr + 2 * B * T + bt, tl.num_programs(1) * tl.num_programs(2)):
            tl.store(flag_ptr + bt * 2 + 1, 0)


def frame_fwd(
    k: torch.Tensor,
    v: torch.Tensor,
    w_beta: torch.Tensor,
    w_alpha: torch.Tensor,
    a_log: torch.Tensor,
    dt_bias: torch.Tensor,
    heads: int,
    initial_state: torch.Tensor | None,
    save: bool = True,
    want_final: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Forward of the frame rule on Triton.

    Args:
        k: [B, T, N, Dk] contiguous, float32 or bfloat16.
        v: [B, T, N, Dv] contiguous, same dtype.
        w_beta, w_alpha: [Dv, H] contiguous fp32.
        a_log, dt_bias: [H] contiguous fp32.
        heads: H.
        initial_state: [B, Dk, Dv] contiguous fp32, or None.
        save: keep what the backward needs; without it the states overwrite K^T V in place (less memory).
        want_final: also return the final state as its own tensor (the lean walk writes it; other walks: a copy).

    Returns:
        o: [B, T, N, Dv] in the dtype of k.
        states: fp32, last slot = final state. With save [B, T + 1, Dk, Dv] (slot 0 the initial state, unset
            without one; slot t + 1 = S_t), else [B, T, Dk, Dv] (slot t = S_t).
        kk: [B, T, Dk, Dk] fp32 Gram matrices K_t^T K_t for the backward, or None without save.
        kv: [B, T, Dk, Dv] fp32 K_t^T V_t for the backward, or None without save.
        final: [B, Dk, Dv] fp32 state after the last frame (equal to states[:, -1]), or None without want_final.
    """
    b, t, n, dk = k.shape
    dv = v.shape[-1]
    has_h0 = initial_state is not None
    kernel, bh, split, grid, const, read_grid, read_const, token = _fwd_plan(
        b, t, n, dk, dv, heads, k.dtype, k.device, save, has_h0, want_final
    )
    flags = overlap_counters(token, b, t, k.device) if const.get("WAIT") else None
    if kernel is fwd_recurrence_kernel:
        kv, kk, _, _, _ = gram(k, v, with_kk=True, token=token)
        beside = None
    else:
        kv, kk, r, kks, beside = gram(k, v, with_kk=True, gates=(w_beta, w_alpha, heads, bh), split=split,
                                      token=token, flags=flags)  # fmt: skip
    states = torch.empty(b, t + 1, dk, dv, device=k.device, dtype=torch.float32) if save else kv
    h0 = initial_state if has_h0 else states
    first = kks if kernel is fwd_lean_kernel else kk
    gates = () if kernel is fwd_recurrence_kernel else (r,)
    walk_out = read_grid is None  # the lean walk writes o itself (READ)
    o = torch.empty_like(v) if walk_out else None
    final = torch.empty(b, dk, dv, device=k.device, dtype=torch.float32) if const.get("FINAL") else None
    gram_launch, per_frame = (None, 1) if beside is None else beside
    read_beside = read_grid is not None and read_const["meta"].get("WAIT", False)
    if read_beside:  # the readout waits on the walk's counters beside it: its output exists before the walk starts
        o = torch.empty_like(v)
    extra = () if kernel is not fwd_lean_kernel else (
        k, o if walk_out else states, n, states if final is None else final, states if flags is None else flags,
        per_frame,
    )  # fmt: skip
    walk = (kernel, grid, (first, kv, *gates, h0, w_beta, w_alpha, a_log, dt_bias, states, t, dk, dv, heads,
                           dv // heads, *extra), const)  # fmt: skip
    if gram_launch is None:
        launch_planned(token, kernel, grid, *walk[2], **const)
    else:
        sides = [gram_launch]
        if read_beside:
            read_args = (k, states, o, t, n, dk, dv, states.shape[1], read_const["VCOLS"], flags, b, grid[1])
            sides.append((readout_kernel, read_grid, read_args, read_const["meta"]))
        try:
            launch_overlapped(token, walk, sides, (k, v, w_beta, w_alpha, a_log, dt_bias, h0))
        except BaseException:
            drop_counters(token, k.device)  # a launch may have counted without the program that resets the counters
            raise
    gates = first = r = kks = beside = gram_launch = sides = walk = None  # (the launches hold their arguments)
    if not save:
        kk = kv = None  # free the Gram matrices before the output is allocated
    if not walk_out and not read_beside:
        o = torch.empty_like(v)
        launch_planned(token, readout_kernel, read_grid, k, states, o, t, n, dk, dv, states.shape[1],
                       read_const["VCOLS"], states, b, 1, **read_const["meta"])  # fmt: skip
    if want_final and final is None:
        final = states[:, -1].contiguous()
    return o, states, kk, kv, final


@planned
def _fwd_plan(
    b: int, t: int, n: int, dk: int, dv: int, heads: int, dtype: torch.dtype, device: torch.device, save: bool,
    has_h0: bool, want_final: bool = False,
) -> tuple:  # fmt: skip
    """Launch plan of ``frame_fwd`` (memoised: the tile rules run once per shape and ``TUNING``): the recurrence
    kernel, the gate head padding BH, the Gram split mode, the recurrence's grid and constants, the readout's grid
    (None where the lean walk reads out, ``walk_reads``) and its {"VCOLS": columns per program, "meta": constants},
    and the plan's token for ``launch_planned`` (a new object per plan: the launches' constexprs, options and int
    arguments follow from these arguments)."""
    bk = pad_k(dk)
    fast = fast_layout(dk, dv, heads)
    if fast is None:
        _, bv, bh = block_sizes(dk, dv, heads, int(TUNING["fwd_state_tile"]))
        kernel, split, grid = fwd_recurrence_kernel, 0, (b,)
        const = dict(
            HAS_H0=has_h0, IN_PLACE=not save, BK=bk, BV=bv, BH=bh, HEAD_TILE=(dv // heads) % bv == 0,
            PREC=serial_precision(device), num_warps=safe_warps(int(TUNING["fwd_warps"]), bk, min(bv, bh)),
        )  # fmt: skip
    else:
        bh, bv = fast
        # the lean walk: keys up to 64 (at 128 its split G and Q need more than 227 KB of shared memory). It keeps
        # slices inside one head where the old walk widens them (walker_slice): two of its programs per SM run as
        # fast as one of twice the columns (B32 T10 N256, H100: 86.8 vs 89.8 us)
        lean = bool(TUNING["fast_lean"]) and bk <= 64 and not TUNING["fast_psum_dot"]
        if not lean or int(TUNING["fast_wide_slices"]) == 2:
            bv = walker_slice(bv, dv, heads, b, device)
        kernel, split, grid = (
            (fwd_lean_kernel if lean else fwd_parallel_kernel),
            (2 if save else 1) * lean,
            (b, dv // bv),
        )
        const = dict(
            HAS_H0=has_h0, IN_PLACE=not save, BK=bk, BV=bv, BH=bh, PREC=serial_fast_precision(device),
            NHS=max(1, bv // (dv // heads)), num_warps=safe_warps(int(TUNING["fast_warps"]), bk, min(bv, bh * bh)),
            num_stages=int(TUNING["fast_stages"]),
        )  # fmt: skip
        if lean:
            const["EVEN"] = bk == dk and bh == heads
            const["FINAL"] = want_final  # the walk writes the final state (no copy of the last slot afterwards)
            if overlap_fits(b * grid[1], t, device):
                const.update(WAIT=True, LOOKAHEAD=int(TUNING["overlap_lookahead"]), SLEEP=spin_sleep())
            if walk_reads(t):
                rprec = pixel_precision(dtype, device, "readout_hand3")
                const.update(READ=True, BNR=fit(int(TUNING["walk_read_tile"]), bk), RPREC=rprec)
            elif const.get("WAIT") and readout_fits(b, t, n, dk, dv, bh, dtype.itemsize, save):
                const["NOTIFY"] = True  # the readout waits beside the walk for each S_t
        else:
            const["PSUM_DOT"] = bool(TUNING["fast_psum_dot"])
    bn = bvo = fit(int(TUNING["readout_tile"]), bk)
    if int(TUNING["readout_bv"]):  # value columns of a readout tile apart from its pixels
        bvo = min(bn, max(16, next_power_of_2(int(TUNING["readout_bv"]))))
    cols = max(bvo, min(dv, int(TUNING["readout_cols"])) // bvo * bvo)
    read_meta = dict(
        BK=bk, BN=bn, BV=bvo, LOOP=cols > bvo, PREC=pixel_precision(dtype, device, "readout_hand3"),
        num_warps=safe_warps(int(TUNING["readout_warps"]), bn, bvo), num_stages=int(TUNING["readout_stages"]),
    )  # fmt: skip
    if const.get("NOTIFY"):
        read_meta.update(WAIT=True, SLEEP=spin_sleep())
    read_grid = None if const.get("READ") else (b * t, cdiv(n, bn), cdiv(dv, cols))
    return kernel, bh, split, grid, const, read_grid, {"VCOLS": cols, "meta": read_meta}, object()
