"""Reverse state pass with its dO terms computed beforehand (``launch.backward_mode``; derivation in README.md).

Per chunk the reverse pass forms dU = A^T dO + (K * e^{G_C - G}) dS' and dS = e^{G_C} dS' + scale (Q * e^G)^T dO
- w^T dU. Two of its four products do not depend on dS', so they need not sit on the sequential chain:

1. ``_bwd_pre_kernel``, grid (chunks, batch*head, value tiles), fully parallel: dv_loc = A^T dO [BT, BV] and
   c = scale (Q * e^G)^T dO [BK, BV] (fp32), the part of dU and of dS that dO alone gives.
2. ``_state_bwd_pre_kernel``, grid (value tiles, batch*head), reverse over chunks with dS in fp32 registers:
   dU = dv_loc + (K * e^{G_C - G}) dS', then dS = e^{G_C} dS' + c - w^T dU: two products per chunk step and no
   A, q or dO loads (the chain of the default pass carries four products and those loads).

Same arithmetic as ``chunk_jit._bwd_chunk`` in the same order, moved between kernels; outputs as
``chunk_bwd.launch_state_bwd``'s, which runs it by default where its chain fits one wave of programs. Not with
segments (``GDKVM_TOKEN_SEGMENTS``) or bf16 head + tail products (``GDKVM_TOKEN_HILO``): those keep the four-product
chain.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gdkvm.ops._host import cdiv, interpreting
from gdkvm.ops.gated_delta.chunk_jit import _chunk_rows, _cols, _gate_load, _rows, _vec
from gdkvm.ops.gated_delta.launch import block_k, heuristic, key_decay


@triton.jit
def _bwd_pre_kernel(
    q_ptr, gc_ptr, a_ptr, do_ptr, dvl_ptr, c_ptr, scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, NT,
    PER_CHANNEL: tl.constexpr, KEY_DECAY: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):  # fmt: skip
    """One (chunk, batch*head, value tile): dv_loc = A^T dO into dvl_ptr ([B, T, H, V] fp32) and
    c = scale (Q * e^G)^T dO into c_ptr ([B, NT, H, K, V] fp32). Products in the dtype of A (the intermediates')."""
    i_t = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_v = tl.program_id(2)
    i_b = i_bh // H
    i_h = i_bh % H
    dt = a_ptr.dtype.element_ty
    o_i = tl.arange(0, BT)
    cols = tl.arange(0, BK)
    cv = i_v * BV + tl.arange(0, BV)
    mcol = cols < K
    th, mrow = _chunk_rows(i_b, i_t, i_h, T, H, BT)
    m_v = mrow[:, None] & (cv < V)[None, :]
    m_kt = mcol[:, None] & mrow[None, :]
    a_tr = tl.load(a_ptr + th[None, :] * BT + o_i[:, None], mask=mrow[None, :], other=0.0)  # [BT, BT]: A^T
    q_tr = tl.load(q_ptr + th[None, :] * K + cols[:, None], mask=m_kt, other=0.0)  # [BK, BT]
    do_f = tl.load(do_ptr + th[:, None] * V + cv[None, :], mask=m_v, other=0.0).to(tl.float32)
    G, G_last = _gate_load(gc_ptr, th, mrow, cols, mcol, K, PER_CHANNEL)
    tl.store(dvl_ptr + th[:, None] * V + cv[None, :], tl.dot(a_tr, do_f.to(dt)), mask=m_v)
    if PER_CHANNEL or KEY_DECAY:
        qe_tr = (q_tr * (tl.exp(_cols(gc_ptr, th, mrow, cols, mcol, K, G, G_last, PER_CHANNEL)) * scale)).to(dt)
        c = tl.dot(qe_tr, do_f.to(dt))
    else:
        c = tl.dot(q_tr.to(dt), (do_f * (tl.exp(G) * scale)[:, None]).to(dt))
    chunk_bh = (i_b.to(tl.int64) * NT + i_t) * H + i_h
    tl.store(c_ptr + chunk_bh * K * V + cols[:, None] * V + cv[None, :], c, mask=mcol[:, None] & (cv < V)[None, :])


@triton.jit
def _state_bwd_pre_kernel(
    k_ptr, gc_ptr, w_ptr, dvl_ptr, c_ptr, dht_ptr, dh0_ptr, dhs_ptr, dus_ptr, T, H: tl.constexpr, K: tl.constexpr,
    V: tl.constexpr, NT,
    PER_CHANNEL: tl.constexpr, HAS_DHT: tl.constexpr, STORE_DH0: tl.constexpr, KEY_DECAY: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):  # fmt: skip
    """Reverse pass of one (value tile, batch*head) from ``_bwd_pre_kernel``'s dv_loc and c: stores dS' per chunk
    (dhs_ptr [B, NT, H, K, V], intermediate dtype) and dU (dus_ptr [B, T, H, V] fp32); the last dS is
    d initial_state (dh0_ptr [B*H, K, V])."""
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H
    dt = w_ptr.dtype.element_ty
    cols = tl.arange(0, BK)
    cv = i_v * BV + tl.arange(0, BV)
    mcol = cols < K
    m_s = mcol[:, None] & (cv < V)[None, :]
    p_s = cols[:, None] * V + cv[None, :]
    if HAS_DHT:
        dstate = tl.load(dht_ptr + i_bh.to(tl.int64) * K * V + p_s, mask=m_s, other=0.0).to(tl.float32)
    else:
        dstate = tl.zeros([BK, BV], dtype=tl.float32)
    for j in range(NT):
        i_t = NT - 1 - j
        th, mrow = _chunk_rows(i_b, i_t, i_h, T, H, BT)
        m_v = mrow[:, None] & (cv < V)[None, :]
        chunk_bh = (i_b.to(tl.int64) * NT + i_t) * H + i_h
        tl.store(dhs_ptr + chunk_bh * K * V + p_s, dstate.to(dhs_ptr.dtype.element_ty), mask=m_s)
        kt = tl.load(k_ptr + th[:, None] * K + cols[None, :], mask=mrow[:, None] & mcol[None, :], other=0.0)
        w_tr = tl.load(w_ptr + th[None, :] * K + cols[:, None], mask=mcol[:, None] & mrow[None, :], other=0.0)
        dv_loc = tl.load(dvl_ptr + th[:, None] * V + cv[None, :], mask=m_v, other=0.0)
        c = tl.load(c_ptr + chunk_bh * K * V + p_s, mask=m_s, other=0.0)
        G, G_last = _gate_load(gc_ptr, th, mrow, cols, mcol, K, PER_CHANNEL)
        if PER_CHANNEL or KEY_DECAY:
            kbar = (kt * tl.exp(_rows(G_last - G, PER_CHANNEL))).to(dt)
            dpseudo = dv_loc + tl.dot(kbar, dstate.to(dt))
        else:
            dpseudo = dv_loc + tl.dot(kt.to(dt), dstate.to(dt)) * tl.exp(G_last - G)[:, None]
        tl.store(dus_ptr + th[:, None] * V + cv[None, :], dpseudo, mask=m_v)
        dstate = dstate * tl.exp(_vec(G_last, PER_CHANNEL)) + c
        dstate -= tl.dot(w_tr, dpseudo.to(dt))
    if STORE_DH0:
        tl.store(dh0_ptr + i_bh.to(tl.int64) * K * V + p_s, dstate, mask=m_s)


def launch_state_bwd_pre(
    q: torch.Tensor,
    k: torch.Tensor,
    gc: torch.Tensor,
    saved: dict[str, torch.Tensor | None],
    value_dim: int,
    scale: float,
    do: torch.Tensor,
    dht: torch.Tensor | None,
    need_dh0: bool,
    chunk_size: int = 64,
) -> dict[str, torch.Tensor | None]:
    """The reverse state pass as two launches (module docstring): dstates [B, NT, H, K, V] (intermediate dtype),
    dpseudo = dU [B, T, H, V] fp32 and dh0 [B, H, K, V] fp32 (None unless ``need_dh0``), as
    ``chunk_bwd.launch_state_bwd``. Scratch: dv_loc [B, T, H, V] and c [B, NT, H, K, V], fp32."""
    batch, length, heads, key_dim = k.shape
    n_chunks = cdiv(length, chunk_size)
    w, a = saved["w"], saved["a"]
    dstates = torch.empty_like(saved["states"])
    dpseudo = torch.empty(batch, length, heads, value_dim, device=q.device, dtype=torch.float32)
    dh0 = torch.empty(batch, heads, key_dim, value_dim, device=q.device, dtype=torch.float32) if need_dh0 else None
    dv_loc = torch.empty_like(dpseudo)
    c = torch.empty(batch, n_chunks, heads, key_dim, value_dim, device=q.device, dtype=torch.float32)
    bk = block_k(key_dim)
    # warps of both launches from the chain's configuration: 2 with 16-bit operands (see launch.heuristic),
    # overridable through GDKVM_TOKEN_CONFIG's "state_bwd_pre" entry
    cfg = heuristic("state_bwd_pre", key_dim, value_dim, batch * heads, w.dtype.itemsize < 4)
    const = dict(PER_CHANNEL=gc.dim() == 4, KEY_DECAY=key_decay(), BT=chunk_size, BK=bk)
    pre_bv = min(64 if bk <= 128 else 32, max(16, triton.next_power_of_2(value_dim)))
    _bwd_pre_kernel[(n_chunks, batch * heads, cdiv(value_dim, pre_bv))](
        q, gc, a, do, dv_loc, c, scale, length, heads, key_dim, value_dim, n_chunks, **const, BV=pre_bv,
        num_warps=cfg["num_warps"], num_stages=1 if interpreting() else 2,
    )  # fmt: skip
    _state_bwd_pre_kernel[(cdiv(value_dim, cfg["BV"]), batch * heads)](
        k, gc, w, dv_loc, c, dht if dht is not None else dpseudo, dh0 if need_dh0 else dpseudo, dstates, dpseudo,
        length, heads, key_dim, value_dim, n_chunks, **const, HAS_DHT=dht is not None, STORE_DH0=need_dh0,
        BV=cfg["BV"], num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )  # fmt: skip
    return {"dstates": dstates, "dpseudo": dpseudo, "dh0": dh0}
