"""Triton backward of the frame rule (derivation in README.md).

Three launches: K_t^T dO_t for all frames (parallel, the Gram kernel of the forward), the reverse state recurrence
(one program per batch element walks t = T-1 .. 0, reads the checkpointed S_{t-1} and emits dU_t = dL/d(K_t^T V_t),
dG_t = dL/d(K_t^T K_t) and the gate-parameter gradients), and dK, dV for all frames in parallel.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gdkvm.ops._host import cdiv
from gdkvm.ops.frame.tiles import collapse_to_heads, expand_gates, gate_logits, softplus
from gdkvm.ops.frame.triton_bwd_sliced import sliced_recurrence
from gdkvm.ops.frame.triton_gram import gram
from gdkvm.ops.frame.tuning import (
    TUNING,
    block_sizes,
    dot_precision,
    fit,
    launch,
    pad_k,
    safe_warps,
    serial_precision,
)


@triton.jit
def _bwd_frame_pass2(
    prev, gram_t, kv_t, kdo_t, ds_in, ds_out, du_t, beta, alpha, DK, DV, HD,
    BK: tl.constexpr, BV: tl.constexpr, BH: tl.constexpr, HEAD_TILE: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Value-tile sweep of one frame: store dU_t and the direct part of dS_{t-1}; return dG_t, dalpha, dbeta."""
    rk = tl.arange(0, BK)
    dgram = tl.zeros((BK, BK), dtype=tl.float32)
    dalpha = tl.zeros((BK, BH), dtype=tl.float32)
    dbeta = tl.zeros((BK, BH), dtype=tl.float32)
    for j0 in range(0, DV, BV):
        rv = j0 + tl.arange(0, BV)
        offs = rk[:, None] * DV + rv[None, :]
        mask = (rk[:, None] < DK) & (rv[None, :] < DV)
        s = tl.load(prev + offs, mask=mask, other=0.0)
        s_t = tl.load(prev + rk[None, :] * DV + rv[:, None], mask=(rk[None, :] < DK) & (rv[:, None] < DV), other=0.0)
        kv = tl.load(kv_t + offs, mask=mask, other=0.0)
        dst = tl.load(ds_in + offs, mask=mask, other=0.0) + tl.load(kdo_t + offs, mask=mask, other=0.0)
        bx, ax = expand_gates(beta, alpha, j0, DV, HD, BV, BH, HEAD_TILE, PREC)
        gs = tl.dot(gram_t, s, input_precision=PREC)
        dm = ax * dst
        dgs = -bx * dm
        tl.store(du_t + offs, bx * dst, mask=mask)
        dgram += tl.dot(dgs, s_t, input_precision=PREC)
        tl.store(ds_out + offs, dm + tl.dot(gram_t, dgs, input_precision=PREC), mask=mask)
        dalpha += collapse_to_heads(dst * (s - bx * gs), j0, DV, HD, BV, BH, HEAD_TILE, PREC)
        dbeta += collapse_to_heads(dst * kv - dm * gs, j0, DV, HD, BV, BH, HEAD_TILE, PREC)
    return dgram, dalpha, dbeta


@triton.jit
def _bwd_frame_pass3(
    prev, wb_ptr, wa_ptr, ds_in, ds_out, dwb_t, dwa_t, dpb, dpa, DK, DV, H,
    BK: tl.constexpr, BV: tl.constexpr, BH: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Gate-projection sweep: dW = S_{t-1}^T dP per value tile, and dS_{t-1} += dP W^T."""
    rk = tl.arange(0, BK)
    rh = tl.arange(0, BH)
    for j0 in range(0, DV, BV):
        rv = j0 + tl.arange(0, BV)
        offs = rk[:, None] * DV + rv[None, :]
        mask = (rk[:, None] < DK) & (rv[None, :] < DV)
        s_t = tl.load(prev + rk[None, :] * DV + rv[:, None], mask=(rk[None, :] < DK) & (rv[:, None] < DV), other=0.0)
        w_offs = rv[:, None] * H + rh[None, :]
        w_mask = (rv[:, None] < DV) & (rh[None, :] < H)
        tl.store(dwb_t + w_offs, tl.dot(s_t, dpb, input_precision=PREC), mask=w_mask)
        tl.store(dwa_t + w_offs, tl.dot(s_t, dpa, input_precision=PREC), mask=w_mask)
        wt_offs = rh[:, None] + rv[None, :] * H
        wt_mask = (rh[:, None] < H) & (rv[None, :] < DV)
        wb_t = tl.load(wb_ptr + wt_offs, mask=wt_mask, other=0.0)
        wa_t = tl.load(wa_ptr + wt_offs, mask=wt_mask, other=0.0)
        ds = tl.load(ds_in + offs, mask=mask, other=0.0)
        ds += tl.dot(dpb, wb_t, input_precision=PREC) + tl.dot(dpa, wa_t, input_precision=PREC)
        tl.store(ds_out + offs, ds, mask=mask)


@triton.jit(do_not_specialize=["T", "H", "HD"])  # sizes that vary between calls: one compile
def bwd_recurrence_kernel(
    kk_ptr, kv_ptr, kdo_ptr, states_ptr, wb_ptr, wa_ptr, alog_ptr, dt_ptr,
    ds_ptr, du_ptr, dg_ptr, dwb_ptr, dwa_ptr, dalog_ptr, ddt_ptr,
    T, DK, DV, H, HD,
    HAS_H0: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BVW: tl.constexpr, BH: tl.constexpr,
    HEAD_TILE: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Reverse walk over the frames of one batch element. Grid: (B,).

    kk [B,T,DK,DK], kv and kdo [B,T,DK,DV], states [B,T+1,DK,DV]; ds [B,2,DK,DV] holds dL/dS_{T-1} in slot 0 on entry
    and dL/dS_init on exit; outputs du [B,T,DK,DV], dg [B,T,DK,DK] (frame 0 without h0 left untouched), dwb and dwa
    [B,T,DV,H], dalog and ddt [B,H]. All fp32.
    """
    b = tl.program_id(0).to(tl.int64)
    rk = tl.arange(0, BK)
    rh = tl.arange(0, BH)
    rate = tl.exp(tl.load(alog_ptr + rh, mask=rh < H, other=0.0))
    dt = tl.load(dt_ptr + rh, mask=rh < H, other=0.0)
    valid = (rk[:, None] < DK) & (rh[None, :] < H)
    ds_a = ds_ptr + b * 2 * DK * DV
    ds_b = ds_a + DK * DV
    dalog = tl.zeros((BH,), dtype=tl.float32)
    ddt = tl.zeros((BH,), dtype=tl.float32)
    t_stop = 1
    if HAS_H0:
        t_stop = 0
    for i in range(0, T - t_stop):
        t = T - 1 - i
        frame = b * T + t
        prev = states_ptr + (b * (T + 1) + t) * DK * DV
        pb, pa = gate_logits(prev, wb_ptr, wa_ptr, DK, DV, H, BK, BVW, BH, PREC)
        beta = tl.sigmoid(pb)
        g = -rate[None, :] * softplus(pa + dt[None, :])
        alpha = tl.exp(g)
        gmask = (rk[:, None] < DK) & (rk[None, :] < DK)
        gram_t = tl.load(kk_ptr + frame * DK * DK + rk[:, None] * DK + rk[None, :], mask=gmask, other=0.0)
        dgram, dalpha, dbeta = _bwd_frame_pass2(
            prev, gram_t, kv_ptr + frame * DK * DV, kdo_ptr + frame * DK * DV, ds_a, ds_b, du_ptr + frame * DK * DV,
            beta, alpha, DK, DV, HD, BK, BV, BH, HEAD_TILE, PREC,
        )  # fmt: skip
        tl.store(dg_ptr + frame * DK * DK + rk[:, None] * DK + rk[None, :], dgram, mask=gmask)
        dg_log = tl.where(valid, dalpha * alpha, 0.0)
        dpa = dg_log * -rate[None, :] * tl.sigmoid(pa + dt[None, :])
        dpb = tl.where(valid, dbeta * beta * (1.0 - beta), 0.0)
        dalog += tl.sum(dg_log * g, axis=0)
        ddt += tl.sum(dpa, axis=0)
        tl.debug_barrier()
        w_off = frame * DV * H
        _bwd_frame_pass3(
            prev, wb_ptr, wa_ptr, ds_b, ds_a, dwb_ptr + w_off, dwa_ptr + w_off, dpb, dpa, DK, DV, H, BK, BVW, BH, PREC
        )
        tl.debug_barrier()
    if not HAS_H0:
        for j0 in range(0, DV, BVW):
            rv = j0 + tl.arange(0, BVW)
            offs = rk[:, None] * DV + rv[None, :]
            mask = (rk[:, None] < DK) & (rv[None, :] < DV)
            ds = tl.load(ds_a + offs, mask=mask, other=0.0) + tl.load(
                kdo_ptr + b * T * DK * DV + offs, mask=mask, other=0.0
            )
            tl.store(du_ptr + b * T * DK * DV + offs, ds, mask=mask)
    tl.store(dalog_ptr + b * H + rh, dalog, mask=rh < H)
    tl.store(ddt_ptr + b * H + rh, ddt, mask=rh < H)


@triton.jit(do_not_specialize=["T", "N"])  # sizes that vary between calls: one compile
def dkdv_kernel(
    k_ptr, v_ptr, do_ptr, states_ptr, du_ptr, dg_ptr, dk_ptr, dv_ptr, T, N, DK, DV,
    BK: tl.constexpr, BN: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """dK_t = dO_t S_t^T + V_t dU_t^T + K_t (dG_t + dG_t^T) and dV_t = K_t dU_t for one (frame, pixel tile).

    Grid: (B*T, cdiv(N, BN)). k, dk [B,T,N,DK]; v, do, dv [B,T,N,DV]; states [B,T+1,DK,DV]; du [B,T,DK,DV];
    dg [B,T,DK,DK].
    """
    bt = tl.program_id(0).to(tl.int64)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    b = bt // T
    t = bt % T
    nk_mask = (rn[:, None] < N) & (rk[None, :] < DK)
    kt = tl.load(k_ptr + bt * N * DK + rn[:, None] * DK + rk[None, :], mask=nk_mask, other=0.0).to(tl.float32)
    s_base = states_ptr + (b * (T + 1) + t + 1) * DK * DV
    du_base = du_ptr + bt * DK * DV
    acc = tl.zeros((BN, BK), dtype=tl.float32)
    for j0 in range(0, DV, BV):
        rv = j0 + tl.arange(0, BV)
        nv_offs = bt * N * DV + rn[:, None] * DV + rv[None, :]
        nv_mask = (rn[:, None] < N) & (rv[None, :] < DV)
        t_offs = rk[None, :] * DV + rv[:, None]
        t_mask = (rk[None, :] < DK) & (rv[:, None] < DV)
        do = tl.load(do_ptr + nv_offs, mask=nv_mask, other=0.0).to(tl.float32)
        vt = tl.load(v_ptr + nv_offs, mask=nv_mask, other=0.0).to(tl.float32)
        acc += tl.dot(do, tl.load(s_base + t_offs, mask=t_mask, other=0.0), input_precision=PREC)
        acc += tl.dot(vt, tl.load(du_base + t_offs, mask=t_mask, other=0.0), input_precision=PREC)
        kv_mask = (rk[:, None] < DK) & (rv[None, :] < DV)
        du = tl.load(du_base + rk[:, None] * DV + rv[None, :], mask=kv_mask, other=0.0)
        dv = tl.dot(kt, du, input_precision=PREC)
        tl.store(dv_ptr + nv_offs, dv.to(dv_ptr.dtype.element_ty), mask=nv_mask)
    gmask = (rk[:, None] < DK) & (rk[None, :] < DK)
    dg_base = dg_ptr + bt * DK * DK
    dg = tl.load(dg_base + rk[:, None] * DK + rk[None, :], mask=gmask, other=0.0)
    dg += tl.load(dg_base + rk[None, :] * DK + rk[:, None], mask=gmask, other=0.0)
    acc += tl.dot(kt, dg, input_precision=PREC)
    tl.store(dk_ptr + bt * N * DK + rn[:, None] * DK + rk[None, :], acc.to(dk_ptr.dtype.element_ty), mask=nk_mask)


def frame_bwd(
    do: torch.Tensor,
    dfinal: torch.Tensor | None,
    k: torch.Tensor,
    v: torch.Tensor,
    params: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    heads: int,
    states: torch.Tensor,
    kk: torch.Tensor,
    kv: torch.Tensor,
    has_h0: bool,
) -> tuple[torch.Tensor, ...]:
    """Backward of ``frame_fwd``.

    Args:
        do: [B, T, N, Dv] contiguous, dtype of k; gradient of o.
        dfinal: [B, Dk, Dv] gradient of the final state, or None.
        k, v: [B, T, N, Dk], [B, T, N, Dv] contiguous forward inputs.
        params: (w_beta [Dv, H], w_alpha [Dv, H], a_log [H], dt_bias [H]), contiguous fp32.
        heads: H.
        states: [B, T + 1, Dk, Dv] fp32 checkpoint from the forward.
        kk: [B, T, Dk, Dk] fp32 K^T K per frame; kv: [B, T, Dk, Dv] fp32 K^T V per frame.
        has_h0: whether the forward got an initial state.

    Returns:
        dk [B,T,N,Dk], dv [B,T,N,Dv] (dtype of k); dw_beta, dw_alpha [Dv, H], da_log, ddt_bias [H], dh0 [B,Dk,Dv]
        (fp32; dh0 is None without an initial state).
    """
    b, t, n, dk_ = k.shape
    dv_ = v.shape[-1]
    kdo, _, _, _, _ = gram(k, do, with_kk=False)
    walk = sliced_recurrence if TUNING["bwd_sliced"] else _one_program_recurrence
    du, dg, dwb, dwa, dalog, ddt, dh0 = walk(kdo, dfinal, params, heads, states, kk, kv, has_h0)
    bk = pad_k(dk_)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    bn = fit(int(TUNING["dkdv_tile"] if bk <= 64 else TUNING["dkdv_tile_k128"]), bk)
    launch(
        dkdv_kernel, (b * t, cdiv(n, bn)),
        k, v, do, states, du, dg, dk, dv, t, n, dk_, dv_, BK=bk, BN=bn, BV=32, PREC=dot_precision(k.dtype, k.device),
        num_warps=safe_warps(int(TUNING["dkdv_warps"]), bn, min(bk, 32)), num_stages=int(TUNING["dkdv_stages"]),
    )  # fmt: skip
    return dk, dv, dwb, dwa, dalog, ddt, dh0


def _one_program_recurrence(
    kdo: torch.Tensor,
    dfinal: torch.Tensor | None,
    params: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    heads: int,
    states: torch.Tensor,
    kk: torch.Tensor,
    kv: torch.Tensor,
    has_h0: bool,
) -> tuple[torch.Tensor, ...]:
    """The reverse recurrence in one program per batch element (``bwd_recurrence_kernel``; TUNING bwd_sliced 0).

    Same arguments and results as ``triton_bwd_sliced.sliced_recurrence``.
    """
    b, t, dk_, dv_ = kv.shape
    f32 = {"device": kv.device, "dtype": torch.float32}
    ds = torch.zeros(b, 2, dk_, dv_, **f32)
    if dfinal is not None:
        ds[:, 0] = dfinal
    du = torch.empty(b, t, dk_, dv_, **f32)
    dg = torch.zeros(b, t, dk_, dk_, **f32)
    dwb = torch.zeros(b, t, dv_, heads, **f32)
    dwa = torch.zeros(b, t, dv_, heads, **f32)
    dalog = torch.empty(b, heads, **f32)
    ddt = torch.empty(b, heads, **f32)
    bk, bv, bh = block_sizes(dk_, dv_, heads, int(TUNING["bwd_state_tile"]), int(TUNING["bwd_min_bh"]))
    bvw = block_sizes(dk_, dv_, heads, int(TUNING["bwd_light_tile"]))[1]
    launch(
        bwd_recurrence_kernel, (b,),
        kk, kv, kdo, states, *params, ds, du, dg, dwb, dwa, dalog, ddt, t, dk_, dv_, heads, dv_ // heads,
        HAS_H0=has_h0, BK=bk, BV=bv, BVW=bvw, BH=bh, HEAD_TILE=(dv_ // heads) % bv == 0,
        PREC=serial_precision(kv.device), num_warps=safe_warps(int(TUNING["bwd_warps"]), bk, min(bv, bvw, bh)),
        num_stages=int(TUNING["bwd_stages"]),
    )  # fmt: skip
    dh0 = ds[:, 0] if has_h0 else None
    return du, dg, dwb.sum((0, 1)), dwa.sum((0, 1)), dalog.sum(0), ddt.sum(0), dh0
