"""The split output mode's o kernel (``GDKVM_TOKEN_O=split``): o = scale (Q * e^G) S + A U for every (chunk,
batch*head, value tile) at once, from the per-chunk states S and pseudo-values U that the state pass stored, off the
sequential chain (derivation in README.md)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gdkvm.ops._host import cdiv, interpreting, next_power_of_2
from gdkvm.ops.gated_delta.chunk_jit import _gate_load, _rows
from gdkvm.ops.gated_delta.launch import block_k


@triton.jit
def _output_kernel(
    q_ptr, gc_ptr, a_ptr, hs_ptr, us_ptr, o_ptr, scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, NT,
    PER_CHANNEL: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):  # fmt: skip
    """o = scale (Q * e^G) S + A U for one (chunk, batch*head, value tile), from the state entering the chunk and U
    stored by the state pass (split output mode): fully parallel, off the sequential chain."""
    i_t = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_v = tl.program_id(2)
    i_b = i_bh // H
    i_h = i_bh % H
    dt = hs_ptr.dtype.element_ty
    tok0 = i_b.to(tl.int64) * T + i_t * BT
    o_i = tl.arange(0, BT)
    cols = tl.arange(0, BK)
    cv = i_v * BV + tl.arange(0, BV)
    mrow = o_i < T - i_t * BT
    mcol = cols < K
    th = (tok0 + o_i) * H + i_h
    m_k = mrow[:, None] & mcol[None, :]
    m_v = mrow[:, None] & (cv < V)[None, :]
    chunk_bh = (i_b.to(tl.int64) * NT + i_t) * H + i_h
    s_t = tl.load(hs_ptr + chunk_bh * K * V + cols[:, None] * V + cv[None, :], mask=mcol[:, None] & (cv < V)[None, :],
                  other=0.0)  # fmt: skip
    u_t = tl.load(us_ptr + th[:, None] * V + cv[None, :], mask=m_v, other=0.0)
    qt = tl.load(q_ptr + th[:, None] * K + cols[None, :], mask=m_k, other=0.0)
    at = tl.load(a_ptr + th[:, None] * BT + o_i[None, :], mask=mrow[:, None], other=0.0)
    G, _ = _gate_load(gc_ptr, th, mrow, cols, mcol, K, PER_CHANNEL)
    qe = (qt * (tl.exp(_rows(G, PER_CHANNEL)) * scale)).to(dt)
    ot = tl.dot(qe, s_t.to(dt)) + tl.dot(at.to(dt), u_t.to(dt))
    tl.store(o_ptr + th[:, None] * V + cv[None, :], ot.to(o_ptr.dtype.element_ty), mask=m_v)


def launch_output(
    q: torch.Tensor, gc: torch.Tensor, a: torch.Tensor, states: torch.Tensor, pseudo: torch.Tensor, o: torch.Tensor,
    scale: float, chunk_size: int,
) -> None:  # fmt: skip
    """The split output mode's o kernel (parallel over chunks, batch*heads and value tiles)."""
    batch, length, heads, key_dim = q.shape
    value_dim = o.shape[-1]
    n_chunks = cdiv(length, chunk_size)
    bk = block_k(key_dim)
    bv = min(64 if bk <= 128 else 32, max(16, next_power_of_2(value_dim)))
    _output_kernel[(n_chunks, batch * heads, cdiv(value_dim, bv))](
        q, gc, a, states, pseudo, o, scale, length, heads, key_dim, value_dim, n_chunks,
        PER_CHANNEL=gc.dim() == 4, BT=chunk_size, BK=bk, BV=bv, num_warps=4,
        num_stages=1 if interpreting() else 2,
    )  # fmt: skip
