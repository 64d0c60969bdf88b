"""Triton jit helpers shared by the frame-rule kernels (forward, backward, streaming step): K^T Y tiles over pixels,
per-head gate weights and their expansion to value columns, head sums, gate logits and softplus.
"""

from __future__ import annotations

import triton
import triton.language as tl


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
        acc = dot_acc(xt.to(tl.float32), y.to(tl.float32), acc, PREC)
    return acc


@triton.jit
def dot_acc(a, b, acc, PREC: tl.constexpr):
    """acc + a b: ``tl.dot`` at input precision PREC, or for PREC "hand3" 3xTF32 made by hand (both operands split by
    ``split_tf32``: a_lo b_hi + a_hi b_lo + a_hi b_hi), without the NaN selects the compiler's "tf32x3" adds. The
    three products are summed apart from acc, as the compiler's are: added one by one to a large running sum, the
    small ones lost bits (K^T V over 1024 pixels 1.3e-7 vs 1.0e-7 with the GPU's dot numerics)."""
    if PREC == "hand3":  # the small products first, then the big one, in a fresh sum added to acc once
        a_hi, a_lo = split_tf32(a)
        acc += dot3(a_hi, a_lo, b)
    else:
        acc += tl.dot(a, b, input_precision=PREC)  # the form every kernel used before dot_acc (same compiled code)
    return acc


@triton.jit
def head_block_weights(w_ptr, c0, DV, H, HD, BC: tl.constexpr, BH: tl.constexpr):
    """W [DV, H] restricted to each head's rows, for value rows c0..c0+BC: [BC, BH * BH] fp32 with element
    (c, h * BH + h') = W[c0 + c, h'] where row c0 + c belongs to head h, else 0. X @ it gives per-head projections."""
    rc = c0 + tl.arange(0, BC)
    rq = tl.arange(0, BH * BH)
    qh = rq // BH
    qp = rq % BH
    mask = (rc[:, None] < DV) & ((rc[:, None] // HD) == qh[None, :]) & (qp[None, :] < H)
    return tl.load(w_ptr + rc[:, None] * H + qp[None, :], mask=mask, other=0.0)


@triton.jit
def head_projections(
    h_ptr, wb_ptr, wa_ptr, DK, DV, H, HD, BK: tl.constexpr, BV: tl.constexpr, BH: tl.constexpr, PREC: tl.constexpr
):  # fmt: skip
    """Per-head gate projections of a state h [DK, DV] (fp32, row-major), BV columns at a time: two [BK, BH * BH]
    with element (k, h * BH + h') = sum over the columns c of head h of h[k, c] W[c, h'] (W_beta, then W_alpha)."""
    rk = tl.arange(0, BK)
    qb = tl.zeros((BK, BH * BH), dtype=tl.float32)
    qa = tl.zeros((BK, BH * BH), dtype=tl.float32)
    for c0 in range(0, DV, BV):
        rc = c0 + tl.arange(0, BV)
        x = tl.load(h_ptr + rk[:, None] * DV + rc[None, :], mask=(rk[:, None] < DK) & (rc[None, :] < DV), other=0.0)
        qb += tl.dot(x, head_block_weights(wb_ptr, c0, DV, H, HD, BV, BH), input_precision=PREC)
        qa += tl.dot(x, head_block_weights(wa_ptr, c0, DV, H, HD, BV, BH), input_precision=PREC)
    return qb, qa


@triton.jit
def state_slots(kv_b, states_ptr, b, T, DK, DV, IN_PLACE: tl.constexpr):
    """(base, offset) of the walk's output states: S_t at base + (t + offset) * DK * DV. IN_PLACE: over K_t^T V_t
    (kv_b, batch element b's [T, DK, DV]); otherwise states [B, T + 1, DK, DV] with slot 0 the initial state."""
    if IN_PLACE:
        base = kv_b
        slot = 0
    else:
        base = states_ptr + b * (T + 1) * DK * DV
        slot = 1
    return base, slot


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
def tf32_round(x):
    """x rounded to the nearest TF32 value (ties away from zero; low 13 mantissa bits cleared), as cvt.rna.tf32."""
    return ((x.to(tl.int32, bitcast=True) + 0x1000) & -8192).to(tl.float32, bitcast=True)


@triton.jit
def split_tf32(x):
    """x ~ hi + lo, both TF32 values rounded to nearest, as the compiler's 3xTF32 splits: hi = round(x), lo =
    round(x - hi) (x - hi is exact). Truncating instead (once done here) biases every product towards zero: summed
    over 1024 positive keys, K^T K came out 8x less accurate and the ill-conditioned N1024 gradients 10x worse."""
    hi = tf32_round(x)
    return hi, tf32_round(x - hi)


@triton.jit
def dot3(a_hi, a_lo, b):
    """a b to about fp32 accuracy in three TF32 products, a given as its TF32 split (``split_tf32``: a_hi + a_lo), b
    split here: a_lo b_hi + a_hi b_lo + a_hi b_hi (the dropped a_lo b_lo is ~2^-22 relative). Both parts are TF32
    values rounded to nearest, so the products are exact whatever the hardware does to fp32 operands and their errors
    carry no sign bias (the compiler's "tf32x3", without its NaN selects)."""
    b_hi, b_lo = split_tf32(b)
    acc = tl.dot(a_lo, b_hi, input_precision="tf32")
    acc = tl.dot(a_hi, b_lo, acc, input_precision="tf32")
    return tl.dot(a_hi, b_hi, acc, input_precision="tf32")


@triton.jit
def softplus(x):
    return tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))


@triton.jit
def signal_count(flag_ptr):
    """Add this program's arrival to the int32 counter at flag_ptr once every thread's earlier stores are issued
    (CTA barrier) and visible at GPU scope (release; Triton runs a scalar atomic once per program)."""
    tl.debug_barrier()
    tl.atomic_add(flag_ptr, 1, sem="release", scope="gpu")


@triton.jit
def nap(ns):
    """Suspend the calling threads for about ``ns`` nanoseconds (PTX ``nanosleep``, sm_70+; CUDA only: the
    interpreter has no inline assembly). Between polls of a counter it leaves the SM's issue slots and the counter's
    L2 line to the programs that will move it."""
    tl.inline_asm_elementwise(
        "nanosleep.u32 $1;\n\tmov.u32 $0, $1;", "=r,r", [ns], dtype=tl.int32, is_pure=False, pack=1
    )  # (the string literal inline: a jit function has no str variables)


@triton.jit
def wait_count(flag_ptr, target, SLEEP: tl.constexpr = 0):
    """Spin until the int32 counter at flag_ptr reaches target (acquire, GPU scope); a CTA barrier then orders every
    thread's later loads after the wait (read cross-program data with ``.cg``: never a stale L1 line). SLEEP > 0:
    ``nap`` that many nanoseconds between polls."""
    while tl.atomic_add(flag_ptr, 0, sem="acquire", scope="gpu") < target:
        if SLEEP:
            nap(tl.full((), SLEEP, tl.int32))
    tl.debug_barrier()


@triton.jit
def wait_frames(flag_ptr, t, T, target, W: tl.constexpr, SLEEP: tl.constexpr = 0):
    """Spin until the int32 counter of frame t (flag_ptr + 2 t) reaches target; one acquire read covers frames
    t .. t+W-1. Returns the first frame from t on whose counter has not reached it (at most t + W, at most T):
    every frame before it may be read without another wait. A CTA barrier orders all threads' later loads.
    SLEEP > 0: ``nap`` that many nanoseconds after a poll that found frame t not ready."""
    f = t + tl.arange(0, W)
    first = tl.full((), 0, tl.int32)
    while first == 0:
        cnt = tl.atomic_add(flag_ptr + f * 2, 0, mask=f < T, sem="acquire", scope="gpu")
        done = (cnt >= target) | (f >= T)
        first = tl.min(tl.where(done, W, tl.arange(0, W)), axis=0)
        if SLEEP:
            if first == 0:
                nap(tl.full((), SLEEP, tl.int32))
    tl.debug_barrier()
    return tl.minimum(t + first, T)


@triton.jit
def last_arrival(done_ptr, count):
    """Count this program (after every thread's earlier memory operations: CTA barrier, acquire-release at GPU
    scope) into the int32 counter at done_ptr; True for the program that brings it to ``count``, which then resets it
    to 0 (no other program touches it again in this launch)."""
    tl.debug_barrier()
    last = tl.atomic_add(done_ptr, 1, sem="acq_rel", scope="gpu") == count - 1
    if last:
        tl.store(done_ptr, 0)
    return last
