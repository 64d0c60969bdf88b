"""Triton Gram pre-pass of the frame rule: per frame K_t^T Y (Y = V in the forward, dO in the backward), K_t^T K_t
and the per-head gate projections of K_t^T V_t that the parallel recurrence carries (see README.md). One parallel
launch over (frame, column group); ``gram_task`` is also what the one-launch forward's workers run.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gdkvm.ops._host import cdiv, next_power_of_2
from gdkvm.ops.frame.tiles import dot_acc, head_block_weights, kt_y_tile, signal_count, split_tf32
from gdkvm.ops.frame.tuning import (
    TUNING,
    fit,
    launch_planned,
    pad_k,
    pixel_precision,
    planned,
    safe_warps,
    serial_fast_precision,
)


@triton.jit
def _gram_kk(
    k_ptr, kk_ptr, kks_ptr, bt, N, DK, c0, BK: tl.constexpr, BN: tl.constexpr, BC: tl.constexpr,
    PREC: tl.constexpr, SPLIT: tl.constexpr,
):  # fmt: skip
    """Columns c0 .. c0+BC-1 of K^T K of frame bt (int64), k [BT, N, DK]: SPLIT 0 or 2 store them to kk [BT, DK, DK]
    fp32; SPLIT 1 or 2 store their TF32 split (``split_tf32``: hi, lo) to kks [BT, 2, DK, DK] (the lean recurrence's
    operands)."""
    rk = tl.arange(0, BK)
    rc = c0 + tl.arange(0, BC)
    k_base = k_ptr + bt * N * DK
    kk = kt_y_tile(k_base, k_base, N, DK, DK, c0, BK, BN, BC, PREC)
    kk_mask = (rk[:, None] < DK) & (rc[None, :] < DK)
    offs = rk[:, None] * DK + rc[None, :]
    if SPLIT != 1:
        tl.store(kk_ptr + bt * DK * DK + offs, kk, mask=kk_mask)
    if SPLIT:
        hi, lo = split_tf32(kk)
        tl.store(kks_ptr + bt * 2 * DK * DK + offs, hi, mask=kk_mask)
        tl.store(kks_ptr + bt * 2 * DK * DK + DK * DK + offs, lo, mask=kk_mask)


@triton.jit
def _own_head_weights(wb_ptr, wa_ptr, c0, DY, H, BY: tl.constexpr, NR: tl.constexpr):
    """[BY, NR] fp32: for value rows c0 .. c0+BY-1, column 2 h' + w = W_w[row, h'] (w = 0: W_beta, 1: W_alpha),
    zero for h' >= H (NR = 2 x padded heads, at least 16 so the tensor-core product is not narrower than 16)."""
    rc = c0 + tl.arange(0, BY)
    rq = tl.arange(0, NR // 2)
    mask = (rc[:, None] < DY) & (rq[None, :] < H)
    wb = tl.load(wb_ptr + rc[:, None] * H + rq[None, :], mask=mask, other=0.0)
    wa = tl.load(wa_ptr + rc[:, None] * H + rq[None, :], mask=mask, other=0.0)
    return tl.reshape(tl.join(wb, wa), (BY, NR))


@triton.jit
def gram_task(
    k_ptr, y_ptr, ky_ptr, kk_ptr, wb_ptr, wa_ptr, r_ptr, bt, pc, N, DK, DY, H, HD, NCOL, CW,
    WITH_KK: tl.constexpr, WITH_R: tl.constexpr, BK: tl.constexpr, BN: tl.constexpr, BY: tl.constexpr,
    BH: tl.constexpr, PREC: tl.constexpr, SPREC: tl.constexpr, kks_ptr, SPLIT: tl.constexpr, ONE_HEAD: tl.constexpr,
    NR: tl.constexpr, KKC: tl.constexpr,
):  # fmt: skip
    """One program's share of frame bt (int64) of ``gram_kernel``: columns pc*CW .. pc*CW+CW-1 of K^T Y (and with
    WITH_R their heads' gate projections), or for pc == NCOL (with WITH_KK) K^T K. Layouts as in ``gram_kernel``.
    ONE_HEAD (with WITH_R, CW == HD: one head per program): its projections as one [BK, NR] product against that
    head's weight rows only (``_own_head_weights``), not the [BK, 2 BH^2] block products of every head. KKC > 0
    (with WITH_KK): K^T K is spread over the column programs, KKC of its columns each, instead of program NCOL."""
    k_base = k_ptr + bt * N * DK
    rk = tl.arange(0, BK)
    if pc < NCOL:
        rb = tl.zeros((BK, BH * BH), dtype=tl.float32)
        ra = tl.zeros((BK, BH * BH), dtype=tl.float32)
        rj = tl.zeros((BK, NR), dtype=tl.float32)
        for c0 in range(pc * CW, tl.minimum(pc * CW + CW, DY), BY):
            ky = kt_y_tile(k_base, y_ptr + bt * N * DY, N, DK, DY, c0, BK, BN, BY, PREC)
            ry = c0 + tl.arange(0, BY)
            ky_mask = (rk[:, None] < DK) & (ry[None, :] < DY)
            tl.store(ky_ptr + bt * DK * DY + rk[:, None] * DY + ry[None, :], ky, mask=ky_mask)
            if WITH_R:
                if ONE_HEAD:
                    rj = dot_acc(ky, _own_head_weights(wb_ptr, wa_ptr, c0, DY, H, BY, NR), rj, SPREC)
                else:
                    rb = dot_acc(ky, head_block_weights(wb_ptr, c0, DY, H, HD, BY, BH), rb, SPREC)
                    ra = dot_acc(ky, head_block_weights(wa_ptr, c0, DY, H, HD, BY, BH), ra, SPREC)
        if WITH_R and ONE_HEAD:
            rjb, rja = tl.split(tl.reshape(rj, (BK, NR // 2, 2)))
            rq = tl.arange(0, NR // 2)
            r_mask = (rk[:, None] < DK) & (rq[None, :] < H)
            r_offs = bt * DK * 2 * BH * BH + rk[:, None] * 2 * BH * BH + (pc * CW // HD) * BH + rq[None, :]
            tl.store(r_ptr + r_offs, rjb, mask=r_mask)
            tl.store(r_ptr + r_offs + BH * BH, rja, mask=r_mask)
        elif WITH_R:
            rq = tl.arange(0, BH * BH)
            first = pc * CW // HD  # the heads of columns pc*CW .. pc*CW+CW-1 (CW is a multiple of HD here)
            qh = rq[None, :] // BH
            r_mask = (rk[:, None] < DK) & (qh >= first) & (qh < first + CW // HD) & ((rq[None, :] % BH) < H)
            r_offs = bt * DK * 2 * BH * BH + rk[:, None] * 2 * BH * BH + rq[None, :]
            tl.store(r_ptr + r_offs, rb, mask=r_mask)
            tl.store(r_ptr + r_offs + BH * BH, ra, mask=r_mask)
        if WITH_KK and KKC:
            if pc * KKC < DK:
                _gram_kk(k_ptr, kk_ptr, kks_ptr, bt, N, DK, pc * KKC, BK, BN, KKC, PREC, SPLIT)
    elif WITH_KK:
        _gram_kk(k_ptr, kk_ptr, kks_ptr, bt, N, DK, 0, BK, BN, BK, PREC, SPLIT)


@triton.jit
def gram_wide_task(
    k_ptr, y_ptr, ky_ptr, wb_ptr, wa_ptr, r_ptr, bt, pc, N, DK, DY, H, HD, CW,
    WITH_R: tl.constexpr, BK: tl.constexpr, BN: tl.constexpr, BCW: tl.constexpr, BH: tl.constexpr,
    PREC: tl.constexpr, SPREC: tl.constexpr,
):  # fmt: skip
    """``gram_task``'s columns pc*CW .. pc*CW+CW-1 of frame bt in one [BK, BCW] accumulator, the pixel loop outside:
    each K_t^T tile is loaded (and laid out for the tensor cores) once per program instead of once per column tile.
    With WITH_R the gate projections of those columns' heads come from the accumulator in one product each."""
    rk = tl.arange(0, BK)
    rc = pc * CW + tl.arange(0, BCW)
    c_ok = (rc < pc * CW + CW) & (rc < DY)
    acc = tl.zeros((BK, BCW), dtype=tl.float32)
    for n0 in range(0, N, BN):
        rn = n0 + tl.arange(0, BN)
        xt = tl.load(k_ptr + bt * N * DK + rn[None, :] * DK + rk[:, None], mask=(rn[None, :] < N) & (rk[:, None] < DK),
                     other=0.0)  # fmt: skip
        y = tl.load(y_ptr + bt * N * DY + rn[:, None] * DY + rc[None, :], mask=(rn[:, None] < N) & c_ok[None, :],
                    other=0.0)  # fmt: skip
        acc = dot_acc(xt.to(tl.float32), y.to(tl.float32), acc, PREC)
    tl.store(ky_ptr + bt * DK * DY + rk[:, None] * DY + rc[None, :], acc, mask=(rk[:, None] < DK) & c_ok[None, :])
    if WITH_R:
        rq = tl.arange(0, BH * BH)
        end = tl.minimum(pc * CW + CW, DY)  # the weight rows of this program's columns only
        zero = tl.zeros((BK, BH * BH), dtype=tl.float32)
        rb = dot_acc(acc, head_block_weights(wb_ptr, pc * CW, end, H, HD, BCW, BH), zero, SPREC)
        ra = dot_acc(acc, head_block_weights(wa_ptr, pc * CW, end, H, HD, BCW, BH), zero, SPREC)
        first = pc * CW // HD
        qh = rq[None, :] // BH
        r_mask = (rk[:, None] < DK) & (qh >= first) & (qh < first + CW // HD) & ((rq[None, :] % BH) < H)
        r_offs = bt * DK * 2 * BH * BH + rk[:, None] * 2 * BH * BH + rq[None, :]
        tl.store(r_ptr + r_offs, rb, mask=r_mask)
        tl.store(r_ptr + r_offs + BH * BH, ra, mask=r_mask)


@triton.jit(do_not_specialize=["N", "H", "HD", "NCOL", "NB", "NT", "GC"])  # sizes that vary: one compile
def gram_kernel(
    k_ptr, y_ptr, ky_ptr, kk_ptr, kks_ptr, wb_ptr, wa_ptr, r_ptr, N, DK, DY, H, HD, NCOL, CW, flag_ptr, NB, NT, GC,
    WITH_KK: tl.constexpr, WITH_R: tl.constexpr, BK: tl.constexpr, BN: tl.constexpr, BY: tl.constexpr,
    BH: tl.constexpr, PREC: tl.constexpr, SPREC: tl.constexpr, WIDE: tl.constexpr = False, SPLIT: tl.constexpr = 0,
    ONE_HEAD: tl.constexpr = False, NR: tl.constexpr = 16, KKC: tl.constexpr = 0, SIGNAL: tl.constexpr = False,
):  # fmt: skip
    """Per frame bt: ky[bt] = K^T Y, kk[bt] = K^T K (program NCOL, with WITH_KK) and the per-head gate projections of
    K^T Y (WITH_R): r[bt, :, 0, h * BH + h'] = (K^T Y)[:, head h] W_beta[head h, h'], r[bt, :, 1, ...] the same with
    W_alpha.

    Grid: (B*T, NCOL + WITH_KK). Program pc < NCOL owns columns pc*CW .. pc*CW+CW-1 (with WITH_R whole heads: CW a
    multiple of HD) in sub-tiles of BY, or with WIDE in one tile (``gram_wide_task``, BY >= CW). k [BT, N, DK],
    y [BT, N, DY], ky [BT, DK, DY], kk [BT, DK, DK], r [BT, DK, 2, BH*BH] (entries of padded heads are not written),
    all fp32 but k and y. PREC: precision of the dots over pixels (K, Y operands; "hand3": ``dot_acc``); SPREC: of the
    gate projections of K^T Y, whose fp32 operands TF32 would round (they feed the gates). ONE_HEAD, NR, KKC: see
    ``gram_task`` (with KKC > 0 the grid has no program NCOL).
    SIGNAL (the walk waiting beside this launch, ``frame_fwd``'s overlap): grid (NT * NB * GC,) in frame order
    (program (t * NB + b) * GC + c: program c of frame t of batch element b, GC programs per frame), and each program
    counts itself into the int32 flag[b, t, 0] (at 2 (b T + t)) once its stores are visible; without it flag_ptr, NB, NT
    and GC are unused.
    """
    if SIGNAL:
        pid = tl.program_id(0)
        frame = pid // GC
        bt = ((frame % NB) * NT + frame // NB).to(tl.int64)
        pc = pid % GC
    else:
        bt = tl.program_id(0).to(tl.int64)
        pc = tl.program_id(1)
    if WIDE:  # BY = CW padded to a power of two
        if pc < NCOL:
            gram_wide_task(k_ptr, y_ptr, ky_ptr, wb_ptr, wa_ptr, r_ptr, bt, pc, N, DK, DY, H, HD, CW,
                           WITH_R, BK, BN, BY, BH, PREC, SPREC)  # fmt: skip
        elif WITH_KK:
            _gram_kk(k_ptr, kk_ptr, kks_ptr, bt, N, DK, 0, BK, BN, BK, PREC, SPLIT)
    else:
        gram_task(k_ptr, y_ptr, ky_ptr, kk_ptr, wb_ptr, wa_ptr, r_ptr, bt, pc, N, DK, DY, H, HD, NCOL, CW,
                  WITH_KK, WITH_R, BK, BN, BY, BH, PREC, SPREC, kks_ptr, SPLIT, ONE_HEAD, NR, KKC)  # fmt: skip
    if SIGNAL:
        signal_count(flag_ptr + bt * 2)


@planned
def gram_layout(
    dk: int, dy: int, heads: int, bh: int, with_r: bool, dtype: torch.dtype, device: torch.device, fused: bool
) -> tuple[int, int, dict]:
    """(CW, NCOL, launch constants) of ``gram_kernel``: ``TUNING["gram_cols"]`` columns (whole heads with with_r)
    per program in one tile (``gram_wide_task``; not in the fused forward, whose workers run ``gram_task``), else
    with_r ``TUNING["gram_heads"]`` heads per program, else BN-wide column tiles. Memoised (``planned``): the
    constants are shared, copy before changing them."""
    bk = pad_k(dk)
    bn = fit(int(TUNING["gram_tile"]), bk)
    hd = dy // heads if with_r else 1
    wide = int(TUNING["gram_cols"]) >= max(hd, 16) and not fused
    warps = int(TUNING["gram_warps"])
    one_head = False
    if wide:  # one tile of whole heads (with_r) per program, pixels outside
        cols = min(int(TUNING["gram_cols"]), 128) if with_r else int(TUNING["gram_cols"])  # 256 + R: > 228 KB smem
        cw = min(dy, max(hd, cols // hd * hd))
        ncol, by = cdiv(dy, cw), next_power_of_2(cw)
        bn = min(bn, int(TUNING["gram_wide_bn"]), fit(int(TUNING["gram_wide_tile"]), by))
        warps = int(TUNING["gram_wide_warps"])
    elif with_r:
        per = max(1, min(heads, int(TUNING["gram_heads"])))
        cw, ncol = hd * per, cdiv(heads, per)
        by = min(cw, bn)
        one_head = per == 1 and bool(TUNING["gram_own_head"])
    else:
        by = cw = bn
        ncol = cdiv(dy, by)
    hand = bool(TUNING["gram_hand3"])
    prec = pixel_precision(dtype, device, "gram_hand3")
    # K^T K spread over the column programs (``gram_kk_spread``): KKC of its columns each, a power of two >= 16
    kkc = 0 if wide or not TUNING["gram_kk_spread"] else min(bk, max(16, next_power_of_2(cdiv(bk, ncol))))
    narrowest = min(by, bk, (max(2 * bh, 16) if one_head else bh * bh) if with_r else by, kkc or bk)
    const = {
        "WITH_R": with_r, "BK": bk, "BN": bn, "BY": by, "BH": bh, "PREC": prec,
        "SPREC": "hand3" if hand else serial_fast_precision(device), "num_stages": int(TUNING["gram_stages"]),
        "WIDE": wide, "ONE_HEAD": one_head, "NR": max(2 * bh, 16), "KKC": kkc,
        "num_warps": safe_warps(warps, bk, narrowest),
    }  # fmt: skip
    return cw, ncol, const


def gram(
    k: torch.Tensor,
    y: torch.Tensor,
    *,
    with_kk: bool,
    gates: tuple[torch.Tensor, torch.Tensor, int, int] | None = None,
    split: int = 0,
    token: object = None,
    flags: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, tuple | None]:
    """K^T Y (and K^T K, and the per-head gate projections of K^T Y) per frame.

    Args:
        k: [B, T, N, Dk] contiguous.
        y: [B, T, N, Dy] contiguous, same dtype.
        with_kk: also compute K^T K.
        gates: (w_beta, w_alpha, heads, BH) to also compute r = per-head projections (``fwd_parallel_kernel``);
            Dy / heads must be a power of two >= 16.
        split: 1: K^T K split for TF32 products instead of kk, 2: beside it (see kks).
        token: the caller's memoised plan token (``launch_planned``; the plan must fix every argument but k, y and
            the gates' tensors), or None.
        flags: int32 counters, flag[b, t, 0] at 2 (b T + t) (``overlap.overlap_counters``): launch in frame
            order, each program counting itself into flag[b, t, 0] (``SIGNAL``), and do not launch yet (see deferred).

    Returns:
        ky: [B, T, Dk, Dy] fp32.
        kk: [B, T, Dk, Dk] fp32, or None.
        r: [B, T, Dk, 2, BH * BH] fp32 (entries of padded heads unset), or None.
        kks: with split [B, T, 2, Dk, Dk] fp32, K^T K split for TF32 products (``split_tf32``: hi, lo), else None.
        deferred: with flags (kernel, grid, args, kwargs) of the launch, for ``overlap.launch_overlapped`` once
            the walk waiting on the counters is launched, and the number of Gram programs per frame; else None (the
            launch has run).
    """
    b, t, n, dk = k.shape
    dy = y.shape[-1]
    f32 = {"device": k.device, "dtype": torch.float32}
    ky = torch.empty(b, t, dk, dy, **f32)
    kk = torch.empty(b, t, dk, dk, **f32) if with_kk and split != 1 else ky
    kks = torch.empty(b, t, 2, dk, dk, **f32) if with_kk and split else ky
    if gates is None:
        wb = wa = r = ky
        heads, bh = 1, 4
    else:
        wb, wa, heads, bh = gates
        r = torch.empty(b, t, dk, 2, bh * bh, **f32)
    cw, ncol, const = gram_layout(dk, dy, heads, bh, gates is not None, k.dtype, k.device, False)
    if n <= const["BN"]:  # one pixel tile: nothing to pipeline (H100, B10 T10 N64: 25.5 vs 29.5 us at 2 stages)
        const = {**const, "num_stages": 1}
    if const["KKC"] and not with_kk:  # (the backward's K^T dO)
        const = {**const, "KKC": 0}
    gc = ncol + int(with_kk and not const["KKC"])
    args = (k, y, ky, kk, kks, wb, wa, r, n, dk, dy, heads, max(1, dy // heads), ncol, cw)
    outs = (ky, (kk if with_kk and split != 1 else None), (r if gates is not None else None),
            (kks if with_kk and split else None))  # fmt: skip
    if flags is None:
        launch_planned(token, gram_kernel, (b * t, gc), *args, ky, b, t, gc, WITH_KK=with_kk,
                       SPLIT=split if with_kk else 0, **const)  # fmt: skip
        return (*outs, None)
    kwargs = dict(WITH_KK=with_kk, SPLIT=split if with_kk else 0, SIGNAL=True, **const)
    return (*outs, ((gram_kernel, (t * b * gc,), (*args, flags, b, t, gc), kwargs), gc))
