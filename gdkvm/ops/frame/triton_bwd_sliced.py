"""Reverse recurrence of the frame rule split over value slices: (batch element, value slice) programs.

The one-program reverse walk (``triton_bwd.bwd_recurrence_kernel``) sweeps every value tile of a clip three times
per frame in ONE program per batch element, so it is latency-bound (~90 us per frame on an H100 at Dv 256). Almost
all of the adjoint's work is local to a value column: with the gates of frame t known,
``D = dS_t + K_t^T dO_t``, ``dU_t = B * D``, ``dM = A * D``, ``d(GS) = -B * dM`` and the direct part
``dM + G_t d(GS)`` of ``dS_{t-1}`` need only that column of ``S_{t-1}``, ``U_t`` and ``dS_t``. Two things are not
local: the gates themselves (``S_{t-1} W``, a sum over all columns; forward quantities, so they are computed for all
frames at once before the walk, ``gate_logits_kernel``) and the gate-logit gradient ``dP [Dk, 2H]``, a sum over each
head's columns that feeds every column of ``dS_{t-1}`` through ``dP W^T``. That sum is the only exchange between
programs: reverse step t first finishes frame t + 1 (sums the slices' partial head sums that step t + 1 left in
``part``, forms dP, adds ``dP W^T`` to its columns of ``dS_t``, adds its rows of dW) and then runs frame t's
column-local part. On CUDA all steps run in one cooperative launch, the programs of a clip meeting at a barrier
after each frame; elsewhere (the interpreter, or a grid too large to be resident at once) each step is a launch of
its own and the launch boundary is the barrier. ``dG_t = d(GS)_t S_{t-1}^T`` needs no recurrence and is one
parallel launch afterwards (``outer_kernel``). Every exchange goes through global memory in a fixed order:
deterministic.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gdkvm.ops._host import cdiv, interpreting, next_power_of_2
from gdkvm.ops.frame.tiles import collapse_to_heads, expand_gates, gate_logits, signal_count, softplus, wait_count
from gdkvm.ops.frame.tuning import TUNING, block_sizes, launch, launch_cooperative, safe_warps, serial_precision


@triton.jit(do_not_specialize=["T", "H", "T_FIRST"])
def gate_logits_kernel(
    states_ptr, wb_ptr, wa_ptr, p_ptr, T, DK, DV, H, T_FIRST,
    BK: tl.constexpr, BV: tl.constexpr, BH: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Gate logits of frame t from S_{t-1}: p[b, t, 0] = S_{t-1} W_beta, p[b, t, 1] = S_{t-1} W_alpha ([BK, BH],
    padded rows and heads 0). Grid: (B, T - T_FIRST); frame t = T_FIRST + program 1. states [B, T+1, DK, DV]."""
    b = tl.program_id(0).to(tl.int64)
    t = T_FIRST + tl.program_id(1)
    pb, pa = gate_logits(states_ptr + (b * (T + 1) + t) * DK * DV, wb_ptr, wa_ptr, DK, DV, H, BK, BV, BH, PREC)
    tile = tl.arange(0, BK)[:, None] * BH + tl.arange(0, BH)[None, :]
    base = p_ptr + (b * T + t) * 2 * BK * BH
    tl.store(base + tile, pb)
    tl.store(base + BK * BH + tile, pa)


@triton.jit
def _gates(p_ptr, frame, rate, dt, BK: tl.constexpr, BH: tl.constexpr):
    """beta, g, alpha and sigmoid(P^alpha + dt) of one frame from its stored logits; each [BK, BH]."""
    tile = tl.arange(0, BK)[:, None] * BH + tl.arange(0, BH)[None, :]
    pb = tl.load(p_ptr + frame * 2 * BK * BH + tile)
    pa = tl.load(p_ptr + frame * 2 * BK * BH + BK * BH + tile) + dt[None, :]
    g = -rate[None, :] * softplus(pa)
    return tl.sigmoid(pb), g, tl.exp(g), tl.sigmoid(pa)


@triton.jit
def _accumulate(ptrs, x, mask):
    """*ptrs += x where mask (rows of one program only: no other program touches them)."""
    tl.store(ptrs, tl.load(ptrs, mask=mask, other=0.0) + x, mask=mask)


@triton.jit
def _finish_frame(
    p_ptr, part_ptr, prev, wb_ptr, wa_ptr, acc_row, b, f, sl, rate, dt, T, DK, DV, H, NS, j0,
    BK: tl.constexpr, BV: tl.constexpr, BH: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """The cross-slice part of frame f: dP from all slices' head sums; adds this slice's rows of dW_f (and, slice 0,
    the per-head a_log and dt_bias terms of frame f) to the batch element's gradient row acc_row (layout in
    ``bwd_slice_kernel``); returns this slice's columns of dP W^T, [BK, BV]."""
    rk = tl.arange(0, BK)
    rh = tl.arange(0, BH)
    rv = j0 + tl.arange(0, BV)
    frame = b * T + f
    beta, g, alpha, sig = _gates(p_ptr, frame, rate, dt, BK, BH)
    tile = rk[:, None] * BH + rh[None, :]
    base = part_ptr + (b * 2 + f % 2) * NS * 2 * BK * BH
    dalpha = tl.zeros((BK, BH), dtype=tl.float32)
    dbeta = tl.zeros((BK, BH), dtype=tl.float32)
    for s in range(0, NS):
        dalpha += tl.load(base + s * 2 * BK * BH + tile, cache_modifier=".cg")  # .cg: L2, never a stale L1 line
        dbeta += tl.load(base + s * 2 * BK * BH + BK * BH + tile, cache_modifier=".cg")
    valid = (rk[:, None] < DK) & (rh[None, :] < H)
    dg_log = tl.where(valid, dalpha * alpha, 0.0)
    dpa = dg_log * -rate[None, :] * sig
    dpb = tl.where(valid, dbeta * beta * (1.0 - beta), 0.0)
    if sl == 0:
        _accumulate(acc_row + 2 * DV * H + rh, tl.sum(dg_log * g, axis=0), rh < H)
        _accumulate(acc_row + 2 * DV * H + H + rh, tl.sum(dpa, axis=0), rh < H)
    s_t = tl.load(prev + rk[None, :] * DV + rv[:, None], mask=(rk[None, :] < DK) & (rv[:, None] < DV), other=0.0)
    w_offs = rv[:, None] * H + rh[None, :]
    w_mask = (rv[:, None] < DV) & (rh[None, :] < H)
    _accumulate(acc_row + w_offs, tl.dot(s_t, dpb, input_precision=PREC), w_mask)
    _accumulate(acc_row + DV * H + w_offs, tl.dot(s_t, dpa, input_precision=PREC), w_mask)
    wt_offs = rh[:, None] + rv[None, :] * H
    wt_mask = (rh[:, None] < H) & (rv[None, :] < DV)
    wb_t = tl.load(wb_ptr + wt_offs, mask=wt_mask, other=0.0)
    wa_t = tl.load(wa_ptr + wt_offs, mask=wt_mask, other=0.0)
    return tl.dot(dpb, wb_t, input_precision=PREC) + tl.dot(dpa, wa_t, input_precision=PREC)


@triton.jit
def _frame_columns(
    ds, p_ptr, part_ptr, prev, kk_ptr, kv_ptr, kdo_ptr, du_ptr, dgs_ptr, b, t, sl, rate, dt, T, DK, DV, HD, NS, j0,
    BK: tl.constexpr, BV: tl.constexpr, BH: tl.constexpr, HEAD_TILE: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """The column-local part of frame t for this slice, given ds = its columns of dL/dS_t (without K^T dO): stores
    dU_t, d(GS)_t and this slice's head sums of dalpha and dbeta; returns its columns of the direct part of
    dL/dS_{t-1}, [BK, BV]."""
    rk = tl.arange(0, BK)
    rv = j0 + tl.arange(0, BV)
    offs = rk[:, None] * DV + rv[None, :]
    mask = (rk[:, None] < DK) & (rv[None, :] < DV)
    frame = b * T + t
    beta, _, alpha, _ = _gates(p_ptr, frame, rate, dt, BK, BH)
    bx, ax = expand_gates(beta, alpha, j0, DV, HD, BV, BH, HEAD_TILE, PREC)
    gmask = (rk[:, None] < DK) & (rk[None, :] < DK)
    gram_t = tl.load(kk_ptr + frame * DK * DK + rk[:, None] * DK + rk[None, :], mask=gmask, other=0.0)
    s = tl.load(prev + offs, mask=mask, other=0.0)
    kv = tl.load(kv_ptr + frame * DK * DV + offs, mask=mask, other=0.0)
    dst = ds + tl.load(kdo_ptr + frame * DK * DV + offs, mask=mask, other=0.0)
    gs = tl.dot(gram_t, s, input_precision=PREC)
    dm = ax * dst
    dgs = -bx * dm
    tl.store(du_ptr + frame * DK * DV + offs, bx * dst, mask=mask)
    tl.store(dgs_ptr + frame * DK * DV + offs, dgs, mask=mask)
    tile = rk[:, None] * BH + tl.arange(0, BH)[None, :]
    base = part_ptr + ((b * 2 + t % 2) * NS + sl) * 2 * BK * BH
    tl.store(base + tile, collapse_to_heads(dst * (s - bx * gs), j0, DV, HD, BV, BH, HEAD_TILE, PREC))
    tl.store(base + BK * BH + tile, collapse_to_heads(dst * kv - dm * gs, j0, DV, HD, BV, BH, HEAD_TILE, PREC))
    return dm + tl.dot(gram_t, dgs, input_precision=PREC)


@triton.jit
def _reverse_step(
    ds, t, kk_ptr, kv_ptr, kdo_ptr, states_ptr, p_ptr, wb_ptr, wa_ptr, part_ptr, du_ptr, dgs_ptr, acc_row,
    b, sl, j0, rate, dt, T, DK, DV, H, HD, NS,
    HAS_H0: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BH: tl.constexpr, HEAD_TILE: tl.constexpr,
    PREC: tl.constexpr,
):  # fmt: skip
    """Reverse step t of one (batch element, value slice), given ds = its columns of the direct part of dL/dS_t:
    finish frame t + 1 (if t + 1 < T), then frame t's column-local part (t >= first frame; returns the direct part
    of dL/dS_{t-1}), or dU_0 = dL/dS_0 (t = 0 without an initial state), or dL/dS_init (t = -1; returned)."""
    if t + 1 < T:
        prev = states_ptr + (b * (T + 1) + t + 1) * DK * DV
        ds += _finish_frame(
            p_ptr, part_ptr, prev, wb_ptr, wa_ptr, acc_row, b, t + 1, sl, rate, dt, T, DK, DV, H, NS, j0, BK, BV,
            BH, PREC,
        )  # fmt: skip
    t_first = 1
    if HAS_H0:
        t_first = 0
    if t >= t_first:
        prev = states_ptr + (b * (T + 1) + t) * DK * DV
        ds = _frame_columns(
            ds, p_ptr, part_ptr, prev, kk_ptr, kv_ptr, kdo_ptr, du_ptr, dgs_ptr, b, t, sl, rate, dt, T, DK, DV, HD,
            NS, j0, BK, BV, BH, HEAD_TILE, PREC,
        )  # fmt: skip
    elif t == 0:  # no initial state: S_0 = U_0, so dU_0 is the whole gradient of S_0
        rk = tl.arange(0, BK)
        rv = j0 + tl.arange(0, BV)
        offs = b * T * DK * DV + rk[:, None] * DV + rv[None, :]
        mask = (rk[:, None] < DK) & (rv[None, :] < DV)
        tl.store(du_ptr + offs, ds + tl.load(kdo_ptr + offs, mask=mask, other=0.0), mask=mask)
    return ds


@triton.jit
def _slice_barrier(bar_ptr, target):
    """Wait until the counter at bar_ptr reaches target after adding this program's arrival (one atomic per program:
    Triton runs scalar atomics once). Release on arrival and acquire while spinning, at GPU scope, with CTA barriers
    around so that every thread's stores precede the arrival and every thread's loads follow the wait."""
    signal_count(bar_ptr)
    wait_count(bar_ptr, target)


@triton.jit(do_not_specialize=["t", "T", "H", "HD", "NS"])
def bwd_slice_kernel(
    kk_ptr, kv_ptr, kdo_ptr, states_ptr, p_ptr, wb_ptr, wa_ptr, alog_ptr, dt_ptr,
    ds_ptr, part_ptr, du_ptr, dgs_ptr, acc_ptr, bar_ptr,
    t, T, DK, DV, H, HD, NS, ROW,
    HAS_H0: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BH: tl.constexpr, HEAD_TILE: tl.constexpr,
    PREC: tl.constexpr, PERSISTENT: tl.constexpr,
):  # fmt: skip
    """Reverse step t (``_reverse_step``) for one (batch element, value slice), or with PERSISTENT every step from
    T - 1 down, the programs of a batch element meeting at a barrier (counter bar[b]) after each frame: this needs
    all B * NS programs resident at once (a cooperative launch guarantees it or fails).

    Grid: (B, NS), slice sl owns value columns sl*BV .. sl*BV+BV-1. kk [B,T,DK,DK], kv and kdo [B,T,DK,DV], states
    [B,T+1,DK,DV], p [B,T,2,BK,BH] (gate logits), ds [B,DK,DV] (in: dL/dS_{T-1} or the direct part of dL/dS_t;
    out: that of dL/dS_{t-1}, or dL/dS_init), part [B,2,NS,2,BK,BH] (head sums, slot by frame parity), du and dgs
    [B,T,DK,DV], all fp32; acc [B, ROW] fp32 zeros, summed over frames: dW_beta [DV, H], dW_alpha [DV, H], the
    d a_log and d dt_bias terms [2, H], then one slot that bar_ptr (the same buffer as int32) uses as the batch
    element's barrier counter (PERSISTENT only).
    """
    b = tl.program_id(0).to(tl.int64)
    sl = tl.program_id(1)
    j0 = sl * BV
    rk = tl.arange(0, BK)
    rh = tl.arange(0, BH)
    rv = j0 + tl.arange(0, BV)
    offs = b * DK * DV + rk[:, None] * DV + rv[None, :]
    mask = (rk[:, None] < DK) & (rv[None, :] < DV)
    rate = tl.exp(tl.load(alog_ptr + rh, mask=rh < H, other=0.0))
    dt = tl.load(dt_ptr + rh, mask=rh < H, other=0.0)
    ds = tl.load(ds_ptr + offs, mask=mask, other=0.0)
    if PERSISTENT:
        t_first = 1
        if HAS_H0:
            t_first = 0
        for i in range(0, T - t_first + 1):
            step = T - 1 - i
            ds = _reverse_step(
                ds, step, kk_ptr, kv_ptr, kdo_ptr, states_ptr, p_ptr, wb_ptr, wa_ptr, part_ptr, du_ptr, dgs_ptr,
                acc_ptr + b * ROW, b, sl, j0, rate, dt, T, DK, DV, H, HD, NS, HAS_H0, BK, BV, BH, HEAD_TILE, PREC,
            )  # fmt: skip
            if step >= t_first:
                _slice_barrier(bar_ptr + b * ROW + ROW - 1, (i + 1) * NS)
    else:
        ds = _reverse_step(
            ds, t, kk_ptr, kv_ptr, kdo_ptr, states_ptr, p_ptr, wb_ptr, wa_ptr, part_ptr, du_ptr, dgs_ptr,
            acc_ptr + b * ROW, b, sl, j0, rate, dt, T, DK, DV, H, HD, NS, HAS_H0, BK, BV, BH, HEAD_TILE, PREC,
        )  # fmt: skip
    tl.store(ds_ptr + offs, ds, mask=mask)


@triton.jit(do_not_specialize=["T", "T_FIRST"])
def outer_kernel(
    a_ptr, states_ptr, out_ptr, T, DK, DV, T_FIRST, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr
):  # fmt: skip
    """out[b, t] = A[b, t] S_{t-1}^T ([DK, DK]) for frames t >= T_FIRST, 0 before. Grid: (B*T,). a [B,T,DK,DV],
    states [B,T+1,DK,DV], out [B,T,DK,DK], fp32."""
    bt = tl.program_id(0).to(tl.int64)
    b = bt // T
    t = bt % T
    rk = tl.arange(0, BK)
    acc = tl.zeros((BK, BK), dtype=tl.float32)
    if t >= T_FIRST:
        prev = states_ptr + (b * (T + 1) + t) * DK * DV
        for j0 in range(0, DV, BV):
            rv = j0 + tl.arange(0, BV)
            a_offs = bt * DK * DV + rk[:, None] * DV + rv[None, :]
            a = tl.load(a_ptr + a_offs, mask=(rk[:, None] < DK) & (rv[None, :] < DV), other=0.0)
            t_mask = (rk[None, :] < DK) & (rv[:, None] < DV)
            s_t = tl.load(prev + rk[None, :] * DV + rv[:, None], mask=t_mask, other=0.0)
            acc += tl.dot(a, s_t, input_precision=PREC)
    out_mask = (rk[:, None] < DK) & (rk[None, :] < DK)
    tl.store(out_ptr + bt * DK * DK + rk[:, None] * DK + rk[None, :], acc, mask=out_mask)


def _persistent_walk(grid: tuple[int, int], walk: tuple, sizes: tuple, const: dict) -> bool:
    """All reverse steps in ONE cooperative launch (``bwd_slice_kernel`` with PERSISTENT), where TUNING allows it
    (bwd_persistent: 0 never, 1 on CUDA, 2 always; 2 is for compile checks only, as the interpreter runs programs
    one by one and would wait forever at the first barrier). Returns False, having changed nothing, where it did not
    run: not allowed, or the grid does not fit on the device at once (the cooperative launch is refused)."""
    mode = int(TUNING["bwd_persistent"])
    if mode == 0 or (mode == 1 and (not walk[0].is_cuda or interpreting())):
        return False
    return launch_cooperative(bwd_slice_kernel, grid, *walk, 0, *sizes, PERSISTENT=True, **const)


def sliced_recurrence(
    kdo: torch.Tensor,
    dfinal: torch.Tensor | None,
    params: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    heads: int,
    states: torch.Tensor,
    kk: torch.Tensor,
    kv: torch.Tensor,
    has_h0: bool,
) -> tuple[torch.Tensor, ...]:
    """The reverse recurrence by value slices (module docstring): one cooperative launch of ``bwd_slice_kernel`` on
    CUDA where the grid fits the device at once, else T - first + 1 launches of it, one per reverse step.

    Args:
        kdo: [B, T, Dk, Dv] fp32 K_t^T dO_t; kk [B, T, Dk, Dk], kv [B, T, Dk, Dv] fp32 from the forward.
        dfinal: [B, Dk, Dv] gradient of the final state, or None.
        params: (w_beta [Dv, H], w_alpha [Dv, H], a_log [H], dt_bias [H]), contiguous fp32.
        heads: H. states: [B, T + 1, Dk, Dv] fp32 checkpoint. has_h0: whether the forward got an initial state.

    Returns:
        du [B,T,Dk,Dv], dg [B,T,Dk,Dk] (frame 0 zero without h0), dw_beta and dw_alpha [Dv,H], da_log and ddt_bias
        [H] (summed over the batch), dh0 [B,Dk,Dv] or None. All fp32.
    """
    b, t, dk, dv = kv.shape
    wb, wa, a_log, dt_bias = params
    f32 = {"device": kv.device, "dtype": torch.float32}
    prec = serial_precision(kv.device)
    bk, _, bh = block_sizes(dk, dv, heads, int(TUNING["bwd_state_tile"]), int(TUNING["bwd_min_bh"]))
    bvw = block_sizes(dk, dv, heads, int(TUNING["bwd_light_tile"]))[1]
    bv = max(16, min(next_power_of_2(dv), int(TUNING["bwd_slice"])))
    ns = cdiv(dv, bv)
    t_first = 0 if has_h0 else 1
    p = torch.empty(b, t, 2, bk, bh, **f32)
    if t > t_first:
        launch(
            gate_logits_kernel, (b, t - t_first), states, wb, wa, p, t, dk, dv, heads, t_first,
            BK=bk, BV=bvw, BH=bh, PREC=prec, num_warps=safe_warps(4, bk, min(bvw, bh)),
        )  # fmt: skip
    ds = dfinal.clone() if dfinal is not None else torch.zeros(b, dk, dv, **f32)
    row = 2 * dv * heads + 2 * heads + 1  # dW_beta, dW_alpha, d a_log and d dt_bias terms, barrier counter
    acc = torch.zeros(b, row, **f32)
    part = torch.empty(b, 2, ns, 2, bk, bh, **f32)
    du = torch.empty(b, t, dk, dv, **f32)
    dgs = torch.empty(b, t, dk, dv, **f32)
    walk = (kk, kv, kdo, states, p, wb, wa, a_log, dt_bias, ds, part, du, dgs, acc, acc.view(torch.int32))
    const = {"HAS_H0": has_h0, "BK": bk, "BV": bv, "BH": bh, "HEAD_TILE": (dv // heads) % bv == 0, "PREC": prec}
    const["num_warps"] = safe_warps(int(TUNING["bwd_slice_warps"]), bk, min(bv, bh))
    if not _persistent_walk((b, ns), walk, (t, dk, dv, heads, dv // heads, ns, row), const):  # else a launch a step
        for step in range(t - 1, t_first - 2, -1):
            sizes = (step, t, dk, dv, heads, dv // heads, ns, row)
            launch(bwd_slice_kernel, (b, ns), *walk, *sizes, PERSISTENT=False, **const)
    dg = torch.empty(b, t, dk, dk, **f32)
    launch(
        outer_kernel, (b * t,), dgs, states, dg, t, dk, dv, t_first, BK=bk, BV=bvw, PREC=prec,
        num_warps=safe_warps(4, bk, bk),
    )  # fmt: skip
    total = acc[:, :-1].sum(0)
    dw = total[: 2 * dv * heads].view(2, dv, heads)
    dhead = total[2 * dv * heads :].view(2, heads)
    return du, dg, dw[0], dw[1], dhead[0], dhead[1], (ds if has_h0 else None)
