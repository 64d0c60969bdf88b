"""Triton forward of the frame rule: a parallel Gram pre-pass, the serial state recurrence, a parallel readout.

The state recurrence is the only serial part. Everything that does not depend on the state (K_t^T K_t and K_t^T V_t
for all frames, the GEMMs over the N pixels) runs first as one parallel launch on tensor cores, the recurrence then
walks all T frames of a batch element in ONE program (only Dk x Dk x Dv work per frame), and the readout
O_t = K_t S_t runs in parallel over (frame, pixel tile, value tile). See README.md for the layout and numerics.

States are written for every frame to ``states [B, T + 1, Dk, Dv]`` (slot 0 = initial state, slot t + 1 = S_t), which
is the readout's input and the backward's checkpoint.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def dot_precision(dtype: torch.dtype, device: torch.device) -> str:
    """``tl.dot`` input precision of the parallel GEMMs over pixels: 3xTF32 (fp32-accurate) for fp32 inputs, TF32
    for bf16 ones (bf16 values are exact in TF32, products are exact, sums are fp32)."""
    if device.type != "cuda":
        return "ieee"
    return "tf32x3" if dtype == torch.float32 else "tf32"


def serial_precision(device: torch.device) -> str:
    """``tl.dot`` input precision in the serial state kernels (fp32 state, small latency-bound dots): 3xTF32."""
    return "tf32x3" if device.type == "cuda" else "ieee"


# Launch configuration. Tile budgets are element counts of the largest [BK, BV] (or [BN, BK]) fp32 tile of a kernel;
# chosen from ptxas register/spill reports for sm_90 with Triton 3.6 (README.md). bench/ops_frame.py --sweep times
# alternatives on a GPU.
TUNING: dict[str, int] = {
    "fwd_state_tile": 2048,  # Dk64: BV 32 (560 B spilled), Dk128: BV 16 (780 B)
    "fwd_warps": 8,
    "bwd_state_tile": 1024,  # main sweep: BV 16 (916 B / 2808 B; BV 64 spills 5.1 KB)
    "bwd_light_tile": 2048,  # gate-logit and dW sweeps: BV 32 at Dk64 (1.1 KB; BV 64: 2.1 KB)
    "bwd_warps": 8,
    "gram_tile": 4096,  # BN = BY = 64 at Dk64, 32 at Dk128; no spills with 8 warps
    "gram_warps": 8,
    "readout_tile": 4096,
    "readout_warps": 4,
    "dkdv_tile": 4096,  # BN 64 at Dk64 (352 B)
    "dkdv_tile_k128": 2048,  # BN 16 at Dk128 (728 B; BN 32 spills 24 KB)
    "dkdv_warps": 8,
    "step_tile": 2048,
    "step_warps": 4,
}


def pad_k(dk: int) -> int:
    """Padded key width BK (power of two, >= 16 for tl.dot)."""
    return max(16, triton.next_power_of_2(dk))


def fit(budget: int, bk: int, cap: int = 64) -> int:
    """Largest power of two <= cap with bk * it <= budget, and at least 16."""
    return max(16, min(cap, budget // bk))


def block_sizes(dk: int, dv: int, heads: int, budget: int) -> tuple[int, int, int]:
    """(BK, BV, BH): padded key width, value tile of the serial kernels, padded head count; all >= 16 for tl.dot."""
    bk = pad_k(dk)
    bv = fit(budget, bk, max(16, triton.next_power_of_2(dv)))
    bh = max(16, triton.next_power_of_2(heads))
    return bk, bv, bh


@triton.jit
def kt_y_tile(x_ptr, y_ptr, N, DK, DY, col0, BK: tl.constexpr, BN: tl.constexpr, BY: tl.constexpr, PREC: tl.constexpr):
    """X^T Y[:, col0:col0+BY] for one frame: X [N, DK], Y [N, DY] row-major; returns [BK, BY] fp32."""
    rk = tl.arange(0, BK)
    ry = col0 + tl.arange(0, BY)
    acc = tl.zeros((BK, BY), dtype=tl.float32)
    for n0 in range(0, N, BN):
        rn = n0 + tl.arange(0, BN)
        xt = tl.load(x_ptr + rn[None, :] * DK + rk[:, None], mask=(rn[None, :] < N) & (rk[:, None] < DK), other=0.0)
        y = tl.load(y_ptr + rn[:, None] * DY + ry[None, :], mask=(rn[:, None] < N) & (ry[None, :] < DY), other=0.0)
        acc += tl.dot(xt.to(tl.float32), y.to(tl.float32), input_precision=PREC)
    return acc


@triton.jit(do_not_specialize=["N"])  # sizes that vary between calls: one compile
def gram_kernel(
    k_ptr,
    y_ptr,
    ky_ptr,
    kk_ptr,
    N,
    DK,
    DY,
    WITH_KK: tl.constexpr,
    BK: tl.constexpr,
    BN: tl.constexpr,
    BY: tl.constexpr,
    PREC: tl.constexpr,
):
    """Per frame bt: ky[bt] = K^T Y (column tile per program) and, in the last column program, kk[bt] = K^T K.

    Grid: (B*T, cdiv(DY, BY) + WITH_KK). k [BT, N, DK], y [BT, N, DY], ky [BT, DK, DY] fp32, kk [BT, DK, DK] fp32.
    """
    bt = tl.program_id(0).to(tl.int64)
    pc = tl.program_id(1)
    k_base = k_ptr + bt * N * DK
    rk = tl.arange(0, BK)
    if pc * BY < DY:
        ky = kt_y_tile(k_base, y_ptr + bt * N * DY, N, DK, DY, pc * BY, BK, BN, BY, PREC)
        ry = pc * BY + tl.arange(0, BY)
        ky_mask = (rk[:, None] < DK) & (ry[None, :] < DY)
        tl.store(ky_ptr + bt * DK * DY + rk[:, None] * DY + ry[None, :], ky, mask=ky_mask)
    elif WITH_KK:
        kk = kt_y_tile(k_base, k_base, N, DK, DK, 0, BK, BN, BK, PREC)
        kk_mask = (rk[:, None] < DK) & (rk[None, :] < DK)
        tl.store(kk_ptr + bt * DK * DK + rk[:, None] * DK + rk[None, :], kk, mask=kk_mask)


@triton.jit
def head_expander(j0, DV, HD, BV: tl.constexpr, BH: tl.constexpr, TRANSPOSED: tl.constexpr):
    """One-hot heads -> value channels j0..j0+BV: [BH, BV] ([BV, BH] if TRANSPOSED) fp32, 1 where c // HD == h."""
    rh = tl.arange(0, BH)
    rv = j0 + tl.arange(0, BV)
    if TRANSPOSED:
        hit = ((rv[:, None] // HD) == rh[None, :]) & (rv[:, None] < DV)
    else:
        hit = ((rv[None, :] // HD) == rh[:, None]) & (rv[None, :] < DV)
    return hit.to(tl.float32)


@triton.jit
def expand_gates(
    beta, alpha, j0, DV, HD, BV: tl.constexpr, BH: tl.constexpr, HEAD_TILE: tl.constexpr, PREC: tl.constexpr
):
    """Gates [BK, BH] -> their values on value channels j0..j0+BV.

    With HEAD_TILE (HD % BV == 0) the tile lies inside head j0 // HD: the gate columns are picked exactly (select and
    sum over BH) and returned as [BK, 1] for broadcasting; otherwise a one-hot dot gives [BK, BV].
    """
    if HEAD_TILE:
        sel = (tl.arange(0, BH) == j0 // HD)[None, :]
        bx = tl.sum(tl.where(sel, beta, 0.0), axis=1)[:, None]
        ax = tl.sum(tl.where(sel, alpha, 0.0), axis=1)[:, None]
    else:
        expand = head_expander(j0, DV, HD, BV, BH, False)
        bx = tl.dot(beta, expand, input_precision=PREC)
        ax = tl.dot(alpha, expand, input_precision=PREC)
    return bx, ax


@triton.jit
def collapse_to_heads(x, j0, DV, HD, BV: tl.constexpr, BH: tl.constexpr, HEAD_TILE: tl.constexpr, PREC: tl.constexpr):
    """Sum x [BK, BV] (value channels j0..j0+BV) over each head's channels: [BK, BH]."""
    if HEAD_TILE:
        sel = (tl.arange(0, BH) == j0 // HD)[None, :]
        out = tl.where(sel, tl.sum(x, axis=1)[:, None], 0.0)
    else:
        out = tl.dot(x, head_expander(j0, DV, HD, BV, BH, True), input_precision=PREC)
    return out


@triton.jit
def gate_logits_tile(s, wb_ptr, wa_ptr, j0, DV, H, BV: tl.constexpr, BH: tl.constexpr, PREC: tl.constexpr):
    """Contribution of the state columns j0..j0+BV, s [BK, BV] fp32, to S W_beta and S W_alpha; W [DV, H]."""
    rv = j0 + tl.arange(0, BV)
    rh = tl.arange(0, BH)
    wmask = (rv[:, None] < DV) & (rh[None, :] < H)
    wb = tl.load(wb_ptr + rv[:, None] * H + rh[None, :], mask=wmask, other=0.0)
    wa = tl.load(wa_ptr + rv[:, None] * H + rh[None, :], mask=wmask, other=0.0)
    return tl.dot(s, wb, input_precision=PREC), tl.dot(s, wa, input_precision=PREC)


@triton.jit
def gate_logits(
    s_ptr, wb_ptr, wa_ptr, DK, DV, H, BK: tl.constexpr, BV: tl.constexpr, BH: tl.constexpr, PREC: tl.constexpr
):
    """S W_beta and S W_alpha for one state S [DK, DV] (row-major, fp32); W [DV, H]. Returns two [BK, BH] fp32."""
    rk = tl.arange(0, BK)
    pb = tl.zeros((BK, BH), dtype=tl.float32)
    pa = tl.zeros((BK, BH), dtype=tl.float32)
    for j0 in range(0, DV, BV):
        rv = j0 + tl.arange(0, BV)
        s = tl.load(s_ptr + rk[:, None] * DV + rv[None, :], mask=(rk[:, None] < DK) & (rv[None, :] < DV), other=0.0)
        db, da = gate_logits_tile(s, wb_ptr, wa_ptr, j0, DV, H, BV, BH, PREC)
        pb += db
        pa += da
    return pb, pa


@triton.jit
def softplus(x):
    return tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))


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
    if IN_PLACE:
        st_base = kv_base  # S_t at slot t
        slot = 0
    else:
        st_base = states_ptr + b * (T + 1) * DK * DV  # S_t at slot t + 1
        slot = 1
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


@triton.jit(do_not_specialize=["T", "N", "SLOTS"])  # sizes that vary between calls: one compile
def readout_kernel(
    k_ptr,
    states_ptr,
    o_ptr,
    T,
    N,
    DK,
    DV,
    SLOTS,
    BK: tl.constexpr,
    BN: tl.constexpr,
    BV: tl.constexpr,
    PREC: tl.constexpr,
):
    """o[b, t] = K_t S_t for one (frame, pixel tile, value tile). Grid: (B*T, cdiv(N, BN), cdiv(DV, BV)).

    k [B, T, N, DK], o [B, T, N, DV] (dtype of k); states [B, SLOTS, DK, DV] fp32 with S_t at slot t + SLOTS - T.
    """
    bt = tl.program_id(0).to(tl.int64)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)
    rv = tl.program_id(2) * BV + tl.arange(0, BV)
    rk = tl.arange(0, BK)
    b = bt // T
    t = bt % T
    kt = tl.load(
        k_ptr + bt * N * DK + rn[:, None] * DK + rk[None, :], mask=(rn[:, None] < N) & (rk[None, :] < DK), other=0.0
    )
    s_base = states_ptr + (b * SLOTS + t + SLOTS - T) * DK * DV
    s = tl.load(s_base + rk[:, None] * DV + rv[None, :], mask=(rk[:, None] < DK) & (rv[None, :] < DV), other=0.0)
    o = tl.dot(kt.to(tl.float32), s, input_precision=PREC)
    omask = (rn[:, None] < N) & (rv[None, :] < DV)
    tl.store(o_ptr + bt * N * DV + rn[:, None] * DV + rv[None, :], o.to(o_ptr.dtype.element_ty), mask=omask)


def gram(k: torch.Tensor, y: torch.Tensor, *, with_kk: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """K^T Y (and K^T K) per frame.

    Args:
        k: [B, T, N, Dk] contiguous.
        y: [B, T, N, Dy] contiguous, same dtype.
        with_kk: also compute K^T K.

    Returns:
        ky: [B, T, Dk, Dy] fp32.
        kk: [B, T, Dk, Dk] fp32, or None.
    """
    b, t, n, dk = k.shape
    dy = y.shape[-1]
    ky = torch.empty(b, t, dk, dy, device=k.device, dtype=torch.float32)
    kk = torch.empty(b, t, dk, dk, device=k.device, dtype=torch.float32) if with_kk else ky
    bk = pad_k(dk)
    by = bn = fit(TUNING["gram_tile"], bk)
    grid = (b * t, triton.cdiv(dy, by) + int(with_kk))
    prec = dot_precision(k.dtype, k.device)
    gram_kernel[grid](
        k, y, ky, kk, n, dk, dy, WITH_KK=with_kk, BK=bk, BN=bn, BY=by, PREC=prec, num_warps=TUNING["gram_warps"]
    )
    return ky, (kk if with_kk else None)


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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Forward of the frame rule on Triton.

    Args:
        k: [B, T, N, Dk] contiguous, float32 or bfloat16.
        v: [B, T, N, Dv] contiguous, same dtype.
        w_beta, w_alpha: [Dv, H] contiguous fp32.
        a_log, dt_bias: [H] contiguous fp32.
        heads: H.
        initial_state: [B, Dk, Dv] contiguous fp32, or None.
        save: keep what the backward needs; without it the states overwrite K^T V in place (less memory).

    Returns:
        o: [B, T, N, Dv] in the dtype of k.
        states: fp32, last slot = final state. With save [B, T + 1, Dk, Dv] (slot 0 the initial state, unset
            without one; slot t + 1 = S_t), else [B, T, Dk, Dv] (slot t = S_t).
        kk: [B, T, Dk, Dk] fp32 Gram matrices K_t^T K_t for the backward, or None without save.
        kv: [B, T, Dk, Dv] fp32 K_t^T V_t for the backward, or None without save.
    """
    b, t, n, dk = k.shape
    dv = v.shape[-1]
    kv, kk = gram(k, v, with_kk=True)
    states = torch.empty(b, t + 1, dk, dv, device=k.device, dtype=torch.float32) if save else kv
    bk, bv, bh = block_sizes(dk, dv, heads, TUNING["fwd_state_tile"])
    h0 = initial_state if initial_state is not None else states
    fwd_recurrence_kernel[(b,)](
        kk, kv, h0, w_beta, w_alpha, a_log, dt_bias, states, t, dk, dv, heads, dv // heads,
        HAS_H0=initial_state is not None, IN_PLACE=not save, BK=bk, BV=bv, BH=bh,
        HEAD_TILE=(dv // heads) % bv == 0, PREC=serial_precision(k.device), num_warps=TUNING["fwd_warps"],
    )  # fmt: skip
    if not save:
        kk = kv = None  # free the Gram matrices before the output is allocated
    prec = dot_precision(k.dtype, k.device)
    o = torch.empty_like(v)
    bn = bvo = fit(TUNING["readout_tile"], bk)
    grid = (b * t, triton.cdiv(n, bn), triton.cdiv(dv, bvo))
    readout_kernel[grid](
        k, states, o, t, n, dk, dv, states.shape[1], BK=bk, BN=bn, BV=bvo, PREC=prec,
        num_warps=TUNING["readout_warps"],
    )  # fmt: skip
    return o, states, kk, kv
