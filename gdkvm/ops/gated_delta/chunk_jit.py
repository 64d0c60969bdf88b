"""Triton helpers shared by the token-rule kernels (forward, backward and segment scan): the chunk-local cumulative
log-decay G and the gate shape adapters (per head [BT] or per key channel [BT, BK]), and the per-key-channel pairwise
decayed products. All ``@triton.jit``; they run inside the kernels that call them.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _gate_cumsum(g_ptr, th, mrow, cols, mcol, K, PER_CHANNEL: tl.constexpr):
    """Chunk-local cumulative log-decay G ([BT] or [BT, BK], fp32) and its last value G_C ([] or [BK])."""
    if PER_CHANNEL:
        gt = tl.load(g_ptr + th[:, None] * K + cols[None, :], mask=mrow[:, None] & mcol[None, :], other=0.0)
    else:
        gt = tl.load(g_ptr + th, mask=mrow, other=0.0)
    gt = gt.to(tl.float32)
    return tl.cumsum(gt, 0), tl.sum(gt, 0)


@triton.jit
def _rows(x, PER_CHANNEL: tl.constexpr):
    """Broadcasts a per-row gate quantity against a [BT, BK] tile: [BT] -> [BT, 1]; [BT, BK] unchanged."""
    if PER_CHANNEL:
        return x
    else:
        return x[:, None]


@triton.jit
def _vec(x, PER_CHANNEL: tl.constexpr):
    """Broadcasts the chunk-end gate against the rows of a [BK, BV] state: [] stays, [BK] -> [BK, 1]."""
    if PER_CHANNEL:
        return x[:, None]
    else:
        return x


@triton.jit
def _pairwise_channel(q_ptr, k_ptr, g_ptr, th, mrow, K, BT: tl.constexpr):
    """Per-key-channel gate: P_kk[i, j] = k_i^T diag(e^{G_i - G_j}) k_j and P_qk (q_i instead of k_i) for i >= j,
    zero above; [BT, BT] fp32 each. The decay cannot leave the channel sum, so this is an exact sum of rank-1 tiles
    over channels (columns reloaded from memory, G columns rebuilt by cumsum), on CUDA cores."""
    o_i = tl.arange(0, BT)
    causal = o_i[:, None] >= o_i[None, :]
    p_kk = tl.zeros([BT, BT], dtype=tl.float32)
    p_qk = tl.zeros([BT, BT], dtype=tl.float32)
    for c in range(K):
        k_c = tl.load(k_ptr + th * K + c, mask=mrow, other=0.0).to(tl.float32)
        q_c = tl.load(q_ptr + th * K + c, mask=mrow, other=0.0).to(tl.float32)
        g_c = tl.cumsum(tl.load(g_ptr + th * K + c, mask=mrow, other=0.0).to(tl.float32), 0)
        e = tl.exp(tl.where(causal, g_c[:, None] - g_c[None, :], float("-inf")))
        ke = k_c[None, :] * e
        p_kk += k_c[:, None] * ke
        p_qk += q_c[:, None] * ke
    return p_kk, p_qk
