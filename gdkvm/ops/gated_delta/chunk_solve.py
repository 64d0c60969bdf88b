"""The inverse T = (I + L)^-1 of a chunk's unit lower matrix, three ways (``launch.solve_mode``; derivation in
README.md): forward substitution on the 16 x 16 diagonal blocks reading its rows back from a scratch buffer
(``_solve_unit_lower``) or in registers (``_solve_unit_lower_regs``), each followed by the block merge
(``_merge_blocks``), and recursive doubling on tensor cores (``_solve_unit_lower_doubling``, the default at 4+ warps).
All ``@triton.jit`` helpers of ``chunk_fwd._prep_kernel``."""

from __future__ import annotations

import triton
import triton.language as tl


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
