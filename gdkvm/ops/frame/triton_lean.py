"""The lean parallel recurrence of the frame rule (``TUNING["fast_lean"]``): the walk of ``fwd_parallel_kernel`` with a
shorter frame step. Same math and grid (one program per batch element and value slice inside one head, each carrying
the per-head gate projections Q; see README.md), three changes:

- Q is ONE [BK, 2 BQ] tensor (column (h * BH + h') * 2 + w, w = 0 for W_beta, 1 for W_alpha), so G_t Q is one
  product of 128 columns at H = 8 instead of two of 64.
- The products are 3xTF32 made by hand (``dot3``): the Gram pre-pass stores G_t already split into TF32-exact parts
  (``kks [B, T, 2, DK, DK]``: hi, lo), which reach the tensor cores from shared memory as loaded (the compiler's
  "tf32x3" splits both operands in registers, which held 128 of the 255 registers per thread).
- Q_t = X - A B (G_t Q) with X = A Q + B R formed before the product (only X and the accumulator live across it,
  not Q and R), the gates broadcast per head block ([BK, BH, 1] against [BK, BH, 2 BH]) instead of expanded to
  full tiles; EVEN drops the bounds masks where DK and H are the padded sizes. ptxas (sm_90, B10 T10 Dk64 Dv256
  H8): 304 bytes of spill per thread against 1412 for ``fwd_parallel_kernel``, 1627 instructions per frame
  against 2791.
"""

from __future__ import annotations

import triton
import triton.language as tl

from gdkvm.ops.frame.tiles import (
    dot3,
    head_projections,
    last_arrival,
    signal_count,
    softplus,
    split_tf32,
    state_slots,
    wait_frames,
)


@triton.jit
def _load(ptr, mask, EVEN: tl.constexpr):
    """Load through L2 (``.cg``), masked unless EVEN."""
    if EVEN:
        return tl.load(ptr, cache_modifier=".cg")
    return tl.load(ptr, mask=mask, other=0.0, cache_modifier=".cg")


@triton.jit
def _inputs(
    r_b, kv_b, t, DK, DV, q_offs, q_mask, s_offs, s_mask, BK: tl.constexpr, BQ: tl.constexpr, EVEN: tl.constexpr
):  # fmt: skip
    """Frame t's R_t as the joined [BK, 2 BQ] and this slice of U_t = K_t^T V_t [BK, BV]."""
    r_t = r_b + t * DK * 2 * BQ
    rb = _load(r_t + q_offs, q_mask, EVEN)
    ra = _load(r_t + BQ + q_offs, q_mask, EVEN)
    u = _load(kv_b + t * DK * DV + s_offs, s_mask, EVEN)
    return tl.reshape(tl.join(rb, ra), (BK, 2 * BQ)), u


@triton.jit
def _lean_frame(
    g_hi, g_lo, q, s, r, u, rate_h, dt_h, head0, hcol, BK: tl.constexpr, BH: tl.constexpr, NHS: tl.constexpr
):  # fmt: skip
    """One frame: gates from Q_{t-1} [BK, 2 BQ], then Q_t and this slice of S_t (G_t = g_hi + g_lo [BK, BK]; the
    slice holds heads head0 .. head0 + NHS - 1, hcol [1, BV] the head of each column)."""
    BQ: tl.constexpr = BH * BH
    pb, pa = tl.split(tl.sum(tl.reshape(q, (BK, BH, BH, 2)), axis=1))  # [BK, BH]: S W_beta, S W_alpha
    beta_h = tl.sigmoid(pb)
    alpha_h = tl.exp(-rate_h * softplus(pa + dt_h))
    own = tl.arange(0, BH)[None, :] == head0
    beta_s = tl.sum(tl.where(own, beta_h, 0.0), axis=1)[:, None]  # [BK, 1]: the slice's (first) head
    alpha_s = tl.sum(tl.where(own, alpha_h, 0.0), axis=1)[:, None]
    for i in tl.static_range(1, NHS):  # a slice of NHS heads: [BK, BV], each column its head's gates
        sel = tl.arange(0, BH)[None, :] == head0 + i
        beta_s = tl.where(hcol == head0 + i, tl.sum(tl.where(sel, beta_h, 0.0), axis=1)[:, None], beta_s)
        alpha_s = tl.where(hcol == head0 + i, tl.sum(tl.where(sel, alpha_h, 0.0), axis=1)[:, None], alpha_s)
    # Q_t = A (Q - B (G Q)) + B R = X - A B (G Q) with X = A Q + B R formed before the product, so that only X and
    # the accumulator (not Q and R) are live across it; gates broadcast per block h: [BK, BH, 1] against [BK, BH, 2 BH]
    a3 = alpha_h[:, :, None]
    b3 = beta_h[:, :, None]
    x = a3 * tl.reshape(q, (BK, BH, 2 * BH)) + b3 * tl.reshape(r, (BK, BH, 2 * BH))
    gq = tl.reshape(dot3(g_hi, g_lo, q), (BK, BH, 2 * BH))
    q = tl.reshape(x - (a3 * b3) * gq, (BK, 2 * BQ))
    y = alpha_s * s + beta_s * u
    s = y - (alpha_s * beta_s) * dot3(g_hi, g_lo, s)
    return q, s


@triton.jit
def _walk_readout(
    k_ptr, o_ptr, s, bt, j0, N, DK, DV, BK: tl.constexpr, BV: tl.constexpr, BN: tl.constexpr, RPREC: tl.constexpr
):  # fmt: skip
    """o[bt][:, j0:j0+BV] = K_t S_t for this slice's s [BK, BV] while it is in registers (the readout kernel's
    product, BN pixels at a time); k [BT, N, DK] (dtype of o), o [BT, N, DV]. RPREC as ``readout_kernel``'s PREC."""
    rk = tl.arange(0, BK)
    rv = j0 + tl.arange(0, BV)
    for n0 in range(0, N, BN):
        rn = n0 + tl.arange(0, BN)
        kt = tl.load(k_ptr + bt * N * DK + rn[:, None] * DK + rk[None, :], mask=(rn[:, None] < N) & (rk[None, :] < DK),
                     other=0.0).to(tl.float32)  # fmt: skip
        if RPREC == "hand3":
            kt_hi, kt_lo = split_tf32(kt)
            o = dot3(kt_hi, kt_lo, s)
        else:
            o = tl.dot(kt, s, input_precision=RPREC)
        omask = (rn[:, None] < N) & (rv[None, :] < DV)
        tl.store(o_ptr + bt * N * DV + rn[:, None] * DV + rv[None, :], o.to(o_ptr.dtype.element_ty), mask=omask)


@triton.jit
def _lean_step(
    kks_ptr, r_b, kv_b, st_base, k_ptr, o_ptr, b, t, slot, T, N, DK, DV, j0, head0, q, s, rate_h, dt_h, hcol, g_offs,
    g_mask,
    q_offs, q_mask, s_offs, s_mask, IN_PLACE: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BH: tl.constexpr,
    EVEN: tl.constexpr, NHS: tl.constexpr, READ: tl.constexpr, BNR: tl.constexpr, RPREC: tl.constexpr,
):  # fmt: skip
    """Frame t of ``fwd_lean_kernel``: load G_t, R_t and U_t's slice, step Q and S, store S_t (and read out O_t)."""
    BQ: tl.constexpr = BH * BH
    g_t = kks_ptr + (b * T + t) * 2 * DK * DK
    g_hi = _load(g_t + g_offs, g_mask, EVEN)
    g_lo = _load(g_t + DK * DK + g_offs, g_mask, EVEN)
    r, u = _inputs(r_b, kv_b, t, DK, DV, q_offs, q_mask, s_offs, s_mask, BK, BQ, EVEN)
    q, s = _lean_frame(g_hi, g_lo, q, s, r, u, rate_h, dt_h, head0, hcol, BK, BH, NHS)
    if IN_PLACE:
        tl.debug_barrier()  # every thread has read its U_t elements before any overwrites them
    tl.store(st_base + (t + slot) * DK * DV + s_offs, s, mask=s_mask)
    if READ:
        _walk_readout(k_ptr, o_ptr, s, b * T + t, j0, N, DK, DV, BK, BV, BNR, RPREC)
    return q, s


@triton.jit(do_not_specialize=["T", "H", "HD", "N", "GT"])  # sizes that vary between calls: one compile
def fwd_lean_kernel(
    kks_ptr, kv_ptr, r_ptr, h0_ptr, wb_ptr, wa_ptr, alog_ptr, dt_ptr, states_ptr, T, DK, DV, H, HD, k_ptr, o_ptr, N,
    final_ptr, flag_ptr, GT, HAS_H0: tl.constexpr, IN_PLACE: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    BH: tl.constexpr, PREC: tl.constexpr, EVEN: tl.constexpr, NHS: tl.constexpr,
    READ: tl.constexpr = False, BNR: tl.constexpr = 64, RPREC: tl.constexpr = "ieee", FINAL: tl.constexpr = False,
    WAIT: tl.constexpr = False, LOOKAHEAD: tl.constexpr = 4, NOTIFY: tl.constexpr = False, SLEEP: tl.constexpr = 0,
):  # fmt: skip
    """All T frames of value slice j (BV columns inside one head, or NHS = BV / HD whole heads) of batch element b.
    Grid: (B, DV / BV).

    kks [B, T, 2, DK, DK] (K_t^T K_t split: hi, lo), kv [B, T, DK, DV], r [B, T, DK, 2, BH*BH], h0 [B, DK, DV],
    states [B, T + 1, DK, DV] (slot 0 = h0, slot t + 1 = S_t), or with IN_PLACE S_t over kv[b, t]; all fp32.
    PREC: precision of the products that form Q_0 from h0. EVEN: DK == BK and H == BH (no bounds masks).
    READ: also the readout o[b, t][:, slice] = K_t S_t (k [B, T, N, DK], o [B, T, N, DV]; ``_walk_readout``, BNR
    pixels at a time at precision RPREC) instead of ``readout_kernel`` after the walk; without it k, o, N are unused.
    FINAL: also write S_{T-1} to final [B, DK, DV] fp32 (the op's final state, without a copy of the last slot
    afterwards); without it final_ptr is unused.
    WAIT: the Gram pre-pass runs beside the walk (``frame_fwd``'s overlap): before reading frame t, wait until the
    int32 counter flag[b, t, 0] counts its GT Gram programs (one acquire read covers LOOKAHEAD frames); the frame
    loop is then not pipelined, so that no load of a frame moves above its wait. The last program of clip b to finish
    (counted in flag[3 B T + b]) resets those counters to 0. Without it flag_ptr and GT are unused. NOTIFY (with
    WAIT; the readout runs beside the walk too): after storing its slice of S_t, a program counts itself into
    flag[b, t, 1] (the readout of frame t waits for all DV / BV slices). flag: int32 [3 B T + B], see
    ``overlap.overlap_counters``. SLEEP: nanoseconds between polls of a wait (``tiles.wait_frames``).
    """
    b = tl.program_id(0).to(tl.int64)
    j0 = tl.program_id(1) * BV
    BQ: tl.constexpr = BH * BH
    rk = tl.arange(0, BK)
    rv = j0 + tl.arange(0, BV)
    rq = tl.arange(0, BQ)
    s_offs = rk[:, None] * DV + rv[None, :]
    s_mask = (rk[:, None] < DK) & (rv[None, :] < DV)
    q_offs = rk[:, None] * 2 * BQ + rq[None, :]
    q_mask = (rk[:, None] < DK) & ((rq[None, :] // BH) < H) & ((rq[None, :] % BH) < H)
    g_offs = rk[:, None] * DK + rk[None, :]
    g_mask = (rk[:, None] < DK) & (rk[None, :] < DK)
    rh = tl.arange(0, BH)
    rate_h = tl.exp(tl.load(alog_ptr + rh, mask=rh < H, other=0.0))[None, :]
    dt_h = tl.load(dt_ptr + rh, mask=rh < H, other=0.0)[None, :]
    hcol = (rv // HD)[None, :]  # head of each column
    kv_b = kv_ptr + b * T * DK * DV
    r_b = r_ptr + b * T * DK * 2 * BQ
    flag_b = flag_ptr + b * T * 2
    st_base, slot = state_slots(kv_b, states_ptr, b, T, DK, DV, IN_PLACE)
    if HAS_H0:
        t_start = 0
        h0_b = h0_ptr + b * DK * DV
        s = tl.load(h0_b + s_offs, mask=s_mask, other=0.0)
        qb, qa = head_projections(h0_b, wb_ptr, wa_ptr, DK, DV, H, HD, BK, BV, BH, PREC)
        q = tl.reshape(tl.join(qb, qa), (BK, 2 * BQ))
    else:
        t_start = 1
        if WAIT:
            wait_frames(flag_b, 0, T, GT, LOOKAHEAD, SLEEP)
        q, s = _inputs(r_b, kv_b, 0, DK, DV, q_offs, q_mask, s_offs, s_mask, BK, BQ, EVEN)  # Q_0 = R_0, S_0 = U_0
        if READ:
            _walk_readout(k_ptr, o_ptr, s, b * T, j0, N, DK, DV, BK, BV, BNR, RPREC)
    if not IN_PLACE:
        tl.store(st_base + t_start * DK * DV + s_offs, s, mask=s_mask)  # slot 0 = h0, or slot 1 = S_0
    if NOTIFY and t_start == 1:  # S_0 = U_0 is stored (kv[b, 0] itself in place)
        signal_count(flag_b + 1)
    if WAIT:  # not pipelined: no load of frame t may move above its wait
        ready = t_start  # frames before it have all their Gram programs counted (frame 0 waited for above)
        for t in tl.range(t_start, T, num_stages=1):
            if t >= ready:
                ready = wait_frames(flag_b, t, T, GT, LOOKAHEAD, SLEEP)
            q, s = _lean_step(
                kks_ptr, r_b, kv_b, st_base, k_ptr, o_ptr, b, t, slot, T, N, DK, DV, j0, j0 // HD, q, s, rate_h, dt_h,
                hcol, g_offs, g_mask, q_offs, q_mask, s_offs, s_mask, IN_PLACE, BK, BV, BH, EVEN, NHS, READ, BNR, RPREC,
            )  # fmt: skip
            if NOTIFY:
                signal_count(flag_b + t * 2 + 1)
    else:
        for t in range(t_start, T):
            q, s = _lean_step(
                kks_ptr, r_b, kv_b, st_base, k_ptr, o_ptr, b, t, slot, T, N, DK, DV, j0, j0 // HD, q, s, rate_h, dt_h,
                hcol, g_offs, g_mask, q_offs, q_mask, s_offs, s_mask, IN_PLACE, BK, BV, BH, EVEN, NHS, READ, BNR, RPREC,
            )  # fmt: skip
    if FINAL:
        tl.store(final_ptr + b * DK * DV + s_offs, s, mask=s_mask)
    if WAIT:  # every Gram program of clip b has counted itself, every slice has passed every wait: reset
        if last_arrival(flag_ptr + 3 * tl.num_programs(0) * T + b, tl.num_programs(1)):
            for t0 in range(0, T, 16):
                rt = t0 + tl.arange(0, 16)
                tl.store(flag_b + rt * 2, tl.zeros((16,), dtype=tl.int32), mask=rt < T)
