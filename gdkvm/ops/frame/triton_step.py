"""Streaming step of the frame rule on Triton: one frame, forward only, ONE launch.

Within a single frame the previous state is an input, so the gates (which need all Dv columns of S_{t-1}) can be
computed by every program without any cross-program exchange: program (b, j) recomputes the [Dk, H] gates and the
[Dk, Dk] Gram matrix, and owns value tile j of K^T V, of the new state and of the readout.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gdkvm.ops._host import cdiv, next_power_of_2
from gdkvm.ops.frame.tiles import expand_gates, gate_logits, kt_y_tile, softplus
from gdkvm.ops.frame.tuning import (
    TUNING,
    dot_precision,
    fit,
    launch_planned,
    pad_k,
    planned,
    safe_warps,
    serial_precision,
)


@triton.jit(do_not_specialize=["N", "H", "HD"])  # sizes that vary between calls: one compile
def step_kernel(
    k_ptr, v_ptr, h0_ptr, wb_ptr, wa_ptr, alog_ptr, dt_ptr, o_ptr, out_state_ptr, N, DK, DV, H, HD,
    HAS_H0: tl.constexpr, BK: tl.constexpr, BN: tl.constexpr, BV: tl.constexpr, BH: tl.constexpr,
    HEAD_TILE: tl.constexpr, PREC: tl.constexpr, SPREC: tl.constexpr,
):  # fmt: skip
    """One frame for batch element b and value tile j. Grid: (B, cdiv(DV, BV)).

    k [B, N, DK], v [B, N, DV] (input dtype); h0, out_state [B, DK, DV] fp32; o [B, N, DV] (input dtype).
    """
    b = tl.program_id(0).to(tl.int64)
    j0 = tl.program_id(1) * BV
    rk = tl.arange(0, BK)
    rv = j0 + tl.arange(0, BV)
    k_base = k_ptr + b * N * DK
    offs = rk[:, None] * DV + rv[None, :]
    mask = (rk[:, None] < DK) & (rv[None, :] < DV)
    kv = kt_y_tile(k_base, v_ptr + b * N * DV, N, DK, DV, j0, BK, BN, BV, PREC)
    if HAS_H0:
        rh = tl.arange(0, BH)
        prev = h0_ptr + b * DK * DV
        pb, pa = gate_logits(prev, wb_ptr, wa_ptr, DK, DV, H, BK, BV, BH, SPREC)
        rate = tl.exp(tl.load(alog_ptr + rh, mask=rh < H, other=0.0))
        dt = tl.load(dt_ptr + rh, mask=rh < H, other=0.0)
        alpha = tl.exp(-rate[None, :] * softplus(pa + dt[None, :]))
        bx, ax = expand_gates(tl.sigmoid(pb), alpha, j0, DV, HD, BV, BH, HEAD_TILE, SPREC)
        gram = kt_y_tile(k_base, k_base, N, DK, DK, 0, BK, BN, BK, PREC)
        s = tl.load(prev + offs, mask=mask, other=0.0)
        gs = tl.dot(gram, s, input_precision=SPREC)
        state = ax * (s - bx * gs) + bx * kv
    else:
        state = kv
    tl.store(out_state_ptr + b * DK * DV + offs, state, mask=mask)
    for n0 in range(0, N, BN):
        rn = n0 + tl.arange(0, BN)
        kt = tl.load(k_base + rn[:, None] * DK + rk[None, :], mask=(rn[:, None] < N) & (rk[None, :] < DK), other=0.0)
        o = tl.dot(kt.to(tl.float32), state, input_precision=PREC)
        omask = (rn[:, None] < N) & (rv[None, :] < DV)
        tl.store(o_ptr + b * N * DV + rn[:, None] * DV + rv[None, :], o.to(o_ptr.dtype.element_ty), mask=omask)


def frame_step(
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    w_beta: torch.Tensor,
    w_alpha: torch.Tensor,
    a_log: torch.Tensor,
    dt_bias: torch.Tensor,
    heads: int,
    state: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame.

    Args:
        k_t: [B, N, Dk] contiguous, float32 or bfloat16.
        v_t: [B, N, Dv] contiguous, same dtype.
        w_beta, w_alpha: [Dv, H] contiguous fp32; a_log, dt_bias: [H] contiguous fp32.
        heads: H.
        state: [B, Dk, Dv] contiguous fp32 state after the previous frame, or None at the start of a clip.

    Returns:
        o_t: [B, N, Dv] (dtype of k_t).
        new_state: [B, Dk, Dv] fp32.
    """
    b, n, dk = k_t.shape
    dv = v_t.shape[-1]
    grid, const, token = _step_plan(b, n, dk, dv, heads, k_t.dtype, k_t.device, state is not None)
    o = torch.empty_like(v_t)
    new_state = torch.empty(b, dk, dv, device=k_t.device, dtype=torch.float32)
    h0 = state if state is not None else new_state
    launch_planned(
        token, step_kernel, grid,
        k_t, v_t, h0, w_beta, w_alpha, a_log, dt_bias, o, new_state, n, dk, dv, heads, dv // heads, **const,
    )  # fmt: skip
    return o, new_state


@planned
def _step_plan(
    b: int, n: int, dk: int, dv: int, heads: int, dtype: torch.dtype, device: torch.device, has_state: bool
) -> tuple[tuple[int, int], dict, object]:
    """(grid, constants, token for ``launch_planned``) of ``step_kernel``; memoised per shape and ``TUNING``."""
    bk = pad_k(dk)
    bv = bn = fit(int(TUNING["step_tile"]), bk)
    bh = max(16, next_power_of_2(heads))
    const = dict(
        HAS_H0=has_state, BK=bk, BN=bn, BV=bv, BH=bh, HEAD_TILE=(dv // heads) % bv == 0,
        PREC=dot_precision(dtype, device), SPREC=serial_precision(device),
        num_warps=safe_warps(int(TUNING["step_warps"]), bk, min(bv, bh)),
    )  # fmt: skip
    return (b, cdiv(dv, bv)), const, object()
