"""Plain torch references of the token-rule gated delta rule: the test oracle and the CPU path.

Recurrence per (batch, head), decay first as in Gated DeltaNet and Kimi Delta Attention (KDA)::

    S_t = (I - beta_t k_t k_t^T) diag(alpha_t) S_{t-1} + beta_t k_t v_t^T,   alpha_t = exp(g_t)
    o_t = S_t^T (scale * q_t)

with ``g_t`` a per-head scalar ([B, T, H]) or a per-key-channel vector ([B, T, H, K], KDA). Everything is computed in
fp32 (float64 when the inputs are float64, for gradcheck); ``o`` is cast back to the dtype of ``q``, the state is fp32
(float64 for float64 inputs). Autograd differentiates straight through, so there is no hand-written backward here.

``naive_chunk_gated_delta`` is the same rule in the chunkwise (UT / WY) form that the Triton kernels compute, written
in torch; it exists to check the chunk algebra independently of the kernels (see README.md for the derivation).
"""

from __future__ import annotations

import torch


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _per_channel_gate(g: torch.Tensor, key_dim: int) -> torch.Tensor:
    """Expands a per-head gate [B, T, H] to [B, T, H, K]; a per-channel gate is returned unchanged."""
    return g if g.dim() == 4 else g.unsqueeze(-1).expand(*g.shape, key_dim)


def naive_recurrent_gated_delta(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    *,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-by-token loop of the gated delta rule (the oracle).

    Args:
        q: [B, T, H, K] queries.
        k: [B, T, H, K] keys (normally L2-normalised).
        v: [B, T, H, V] values.
        g: [B, T, H] log-decay per head, or [B, T, H, K] log-decay per key channel (<= 0).
        beta: [B, T, H] write strength in (0, 1).
        scale: query scale; defaults to K ** -0.5.
        initial_state: [B, H, K, V] state before the first token, or None for zeros.
        output_final_state: whether to return the state after the last token.

    Returns:
        o: [B, T, H, V] outputs in the dtype of ``q``.
        final_state: [B, H, K, V] fp32 (float64 for float64 inputs) state after the last token, or None.
    """
    batch, length, heads, key_dim = k.shape
    value_dim = v.shape[-1]
    dtype = _compute_dtype(q)
    scale = key_dim**-0.5 if scale is None else scale
    qf, kf, vf = (x.to(dtype) for x in (q, k, v))
    alpha = _per_channel_gate(g.to(dtype), key_dim).exp()
    bf = beta.to(dtype)
    if initial_state is None:
        state = q.new_zeros(batch, heads, key_dim, value_dim, dtype=dtype)
    else:
        state = initial_state.to(dtype)
    outputs = []
    for t in range(length):
        k_t, v_t, b_t = kf[:, t], vf[:, t], bf[:, t, :, None]  # [B,H,K], [B,H,V], [B,H,1]
        state = alpha[:, t, :, :, None] * state
        err = v_t - torch.einsum("bhk,bhkv->bhv", k_t, state)
        state = state + torch.einsum("bhk,bhv->bhkv", k_t, b_t * err)
        outputs.append(torch.einsum("bhk,bhkv->bhv", qf[:, t] * scale, state))
    o = torch.stack(outputs, dim=1) if outputs else vf.new_zeros(batch, 0, heads, value_dim)
    return o.to(q.dtype), (state if output_final_state else None)


def naive_chunk_gated_delta(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    *,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The same rule computed chunk by chunk with the UT transform (torch twin of the Triton kernels).

    Pairwise decays exp(G_i - G_j) are formed per key channel and only for i >= j, so nothing overflows whatever the
    gate. Memory is O(B H C^2 K) per chunk: meant for tests and small inputs.

    Args:
        q, k: [B, T, H, K]; v: [B, T, H, V]; g: [B, T, H] or [B, T, H, K]; beta: [B, T, H].
        scale: query scale; defaults to K ** -0.5.
        initial_state: [B, H, K, V] or None.
        output_final_state: whether to return the final state.
        chunk_size: C, tokens per chunk.

    Returns:
        o: [B, T, H, V] in the dtype of ``q``; final_state: [B, H, K, V] fp32 (or float64) or None.
    """
    batch, length, heads, key_dim = k.shape
    value_dim = v.shape[-1]
    dtype = _compute_dtype(q)
    scale = key_dim**-0.5 if scale is None else scale
    # [B, H, T, D] layout for the algebra below.
    qf, kf, vf = (x.to(dtype).transpose(1, 2) for x in (q, k, v))
    gf = _per_channel_gate(g.to(dtype), key_dim).transpose(1, 2)
    bf = beta.to(dtype).transpose(1, 2)
    state = (
        q.new_zeros(batch, heads, key_dim, value_dim, dtype=dtype) if initial_state is None else initial_state.to(dtype)
    )
    outputs = []
    for start in range(0, length, chunk_size):
        sl = slice(start, min(start + chunk_size, length))
        o_c, state = _chunk_step(qf[:, :, sl], kf[:, :, sl], vf[:, :, sl], gf[:, :, sl], bf[:, :, sl], state, scale)
        outputs.append(o_c)
    o = torch.cat(outputs, dim=2) if outputs else vf.new_zeros(batch, heads, 0, value_dim)
    return o.transpose(1, 2).to(q.dtype), (state if output_final_state else None)


def _chunk_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk: q, k, g [B, H, C, K]; v [B, H, C, V]; beta [B, H, C]; state [B, H, K, V] -> (o [B,H,C,V], state)."""
    size = k.shape[2]
    big_g = g.cumsum(dim=2)  # G_i = sum_{r <= i} g_r, [B, H, C, K]
    causal = torch.ones(size, size, dtype=torch.bool, device=k.device).tril()
    diff = big_g[:, :, :, None, :] - big_g[:, :, None, :, :]  # G_i - G_j, [B, H, C, C, K]
    decay = torch.where(causal[:, :, None], diff, torch.full_like(diff, float("-inf"))).exp()
    kk = torch.einsum("bhik,bhjk,bhijk->bhij", k, k, decay)
    qk = torch.einsum("bhik,bhjk,bhijk->bhij", q, k, decay)
    lower = beta[..., None] * kk.tril(-1)  # L_ij = beta_i k_i^T diag(e^{G_i - G_j}) k_j, i > j
    eye = torch.eye(size, dtype=k.dtype, device=k.device)
    t_inv = torch.linalg.solve_triangular(eye + lower, eye.expand_as(lower), upper=False, unitriangular=True)
    gate = big_g.exp()
    w = t_inv @ (beta[..., None] * k * gate)  # [B, H, C, K]
    u = t_inv @ (beta[..., None] * v)  # [B, H, C, V]
    pseudo = u - w @ state  # U: the values actually written, [B, H, C, V]
    o = scale * ((q * gate) @ state + qk @ pseudo)
    last = big_g[:, :, -1:, :]  # G_C, [B, H, 1, K]
    k_bar = k * (last - big_g).exp()
    new_state = last.transpose(-1, -2).exp() * state + k_bar.transpose(-1, -2) @ pseudo
    return o, new_state


def chunk_reference_intermediates(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    *,
    scale: float,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = 64,
    do: torch.Tensor | None = None,
    dht: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Every intermediate of the Triton kernels, in float64 and in the kernels' buffer layouts, for per-kernel checks.

    Forward: t_inv and a [B, T, H, C] (row i of a chunk, columns j < chunk length, zero elsewhere), w [B, T, H, K],
    u and pseudo (U) [B, T, H, V], states (entering each chunk) [B, NT, H, K, V], o [B, T, H, V], final_state
    [B, H, K, V]. With ``do`` (and optionally ``dht``): dstates (gradient of the state leaving each chunk)
    [B, NT, H, K, V], dpseudo (dU) [B, T, H, V] and dh0 [B, H, K, V], by the backward recurrence of README.md.
    """
    f64 = torch.float64
    batch, length, heads, key_dim = k.shape
    value_dim = v.shape[-1]
    n_chunks = -(-length // chunk_size)
    qf, kf, vf = (x.to(f64).transpose(1, 2) for x in (q, k, v))  # [B, H, T, D]
    gf = _per_channel_gate(g.to(f64), key_dim).transpose(1, 2)
    bf = beta.to(f64).transpose(1, 2)
    state = q.new_zeros(batch, heads, key_dim, value_dim, dtype=f64)
    if initial_state is not None:
        state = initial_state.to(f64).clone()
    dev = q.device
    out = {
        "t_inv": torch.zeros(batch, heads, length, chunk_size, dtype=f64, device=dev),
        "a": torch.zeros(batch, heads, length, chunk_size, dtype=f64, device=dev),
        "w": torch.zeros(batch, heads, length, key_dim, dtype=f64, device=dev),
        "u": torch.zeros(batch, heads, length, value_dim, dtype=f64, device=dev),
        "pseudo": torch.zeros(batch, heads, length, value_dim, dtype=f64, device=dev),
        "o": torch.zeros(batch, heads, length, value_dim, dtype=f64, device=dev),
        "states": torch.zeros(batch, heads, n_chunks, key_dim, value_dim, dtype=f64, device=dev),
    }
    per_chunk = []
    for c in range(n_chunks):
        sl = slice(c * chunk_size, min((c + 1) * chunk_size, length))
        size = sl.stop - sl.start
        qc, kc, vc, gc, bc = qf[:, :, sl], kf[:, :, sl], vf[:, :, sl], gf[:, :, sl], bf[:, :, sl]
        big_g = gc.cumsum(dim=2)
        causal = torch.ones(size, size, dtype=torch.bool, device=dev).tril()
        diff = big_g[:, :, :, None, :] - big_g[:, :, None, :, :]
        decay = torch.where(causal[:, :, None], diff, torch.full_like(diff, float("-inf"))).exp()
        kk = torch.einsum("bhik,bhjk,bhijk->bhij", kc, kc, decay)
        qk = torch.einsum("bhik,bhjk,bhijk->bhij", qc, kc, decay)
        eye = torch.eye(size, dtype=f64, device=dev)
        lower = bc[..., None] * kk.tril(-1)
        t_inv = torch.linalg.solve_triangular(eye + lower, eye.expand_as(lower), upper=False, unitriangular=True)
        gate = big_g.exp()
        w = t_inv @ (bc[..., None] * kc * gate)
        u = t_inv @ (bc[..., None] * vc)
        a = scale * qk
        out["states"][:, :, c] = state
        pseudo = u - w @ state
        out["o"][:, :, sl] = (scale * qc * gate) @ state + a @ pseudo
        last = big_g[:, :, -1:, :]
        k_bar = kc * (last - big_g).exp()
        state = last.transpose(-1, -2).exp() * state + k_bar.transpose(-1, -2) @ pseudo
        out["t_inv"][:, :, sl, :size] = t_inv
        out["a"][:, :, sl, :size] = a
        out["w"][:, :, sl], out["u"][:, :, sl], out["pseudo"][:, :, sl] = w, u, pseudo
        per_chunk.append((sl, qc * gate * scale, a, w, k_bar, last))
    out["final_state"] = state
    if do is not None:
        dof = do.to(f64).transpose(1, 2)
        dstate = torch.zeros_like(state) if dht is None else dht.to(f64).clone()
        out["dstates"] = torch.zeros_like(out["states"])
        out["dpseudo"] = torch.zeros_like(out["pseudo"])
        for c in reversed(range(n_chunks)):
            sl, qe, a, w, k_bar, last = per_chunk[c]
            out["dstates"][:, :, c] = dstate
            dpseudo = a.transpose(-1, -2) @ dof[:, :, sl] + k_bar @ dstate
            out["dpseudo"][:, :, sl] = dpseudo
            dstate = last.transpose(-1, -2).exp() * dstate + qe.transpose(-1, -2) @ dof[:, :, sl]
            dstate = dstate - w.transpose(-1, -2) @ dpseudo
        out["dh0"] = dstate
    for name in ("t_inv", "a", "w", "u", "pseudo", "o", "dpseudo"):
        if name in out:
            out[name] = out[name].transpose(1, 2)  # [B, T, H, *]
    for name in ("states", "dstates"):
        if name in out:
            out[name] = out[name].transpose(1, 2)  # [B, NT, H, K, V]
    return out
