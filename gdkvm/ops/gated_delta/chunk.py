"""Public entry of the token rule: validation, backend choice and the autograd function over the Triton kernels."""

from __future__ import annotations

import logging

import torch

from gdkvm.errors import InputError
from gdkvm.ops.gated_delta.naive import naive_recurrent_gated_delta

logger = logging.getLogger(__name__)

MAX_KEY_DIM = 256
_BACKENDS = ("auto", "triton", "naive")
_FLOATS = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def _shape(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def _check_float(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOATS:
        raise InputError(f"{name} must be a floating tensor (fp32, bf16, fp16 or fp64), got {x.dtype}")


def _validate(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    initial_state: torch.Tensor | None,
) -> None:
    """Raises InputError naming the offending tensor and its shape, dtype or device."""
    for name, x in (("q", q), ("k", k), ("v", v), ("g", g), ("beta", beta)):
        _check_float(name, x)
    if q.dim() != 4:
        raise InputError(f"q must be [B, T, H, K], got shape {_shape(q)}")
    batch, length, heads, key_dim = q.shape
    if _shape(k) != _shape(q):
        raise InputError(f"k must have the shape of q {_shape(q)} = [B, T, H, K], got {_shape(k)}")
    if v.dim() != 4 or _shape(v)[:3] != (batch, length, heads):
        raise InputError(f"v must be [B, T, H, V] = [{batch}, {length}, {heads}, V], got shape {_shape(v)}")
    if _shape(g) not in ((batch, length, heads), (batch, length, heads, key_dim)):
        raise InputError(
            f"g must be [B, T, H] = {(batch, length, heads)} or [B, T, H, K] = {(batch, length, heads, key_dim)}, "
            f"got shape {_shape(g)}"
        )
    if _shape(beta) != (batch, length, heads):
        raise InputError(f"beta must be [B, T, H] = {(batch, length, heads)}, got shape {_shape(beta)}")
    if key_dim > MAX_KEY_DIM:
        raise InputError(f"key dimension K = {key_dim} is not supported: the kernels need K <= {MAX_KEY_DIM}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise InputError(f"q, k and v must share one dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    tensors = {"q": q, "k": k, "v": v, "g": g, "beta": beta}
    if initial_state is not None:
        _check_float("initial_state", initial_state)
        want = (batch, heads, key_dim, v.shape[-1])
        if _shape(initial_state) != want:
            raise InputError(f"initial_state must be [B, H, K, V] = {want}, got shape {_shape(initial_state)}")
        tensors["initial_state"] = initial_state
    devices = {name: x.device for name, x in tensors.items()}
    if len(set(devices.values())) > 1:
        raise InputError(f"all tensors must be on one device, got {', '.join(f'{n} {d}' for n, d in devices.items())}")


class _ChunkGatedDelta(torch.autograd.Function):
    """Autograd over the Triton kernels. The forward keeps T = (I + L)^-1, A, w, the per-chunk states and U, so the
    backward replays nothing sequential except its own reverse pass."""

    @staticmethod
    def forward(ctx, q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size, save):  # noqa: D102
        from gdkvm.ops.gated_delta.chunk_fwd import chunk_fwd

        q, k, v, beta = (x.contiguous() for x in (q, k, v, beta))
        g32 = g.float().contiguous()
        h0 = None if initial_state is None else initial_state.float().contiguous()
        out = chunk_fwd(q, k, v, g32, beta, scale, h0, output_final_state, save, chunk_size=chunk_size)
        if save:
            kept = [out[name] for name in ("t_inv", "a", "w", "states", "pseudo")]
            ctx.save_for_backward(q, k, v, out["gc"], beta, *kept)
        ctx.meta = (scale, chunk_size, g.dtype, beta.dtype, None if initial_state is None else initial_state.dtype)
        return out["o"], out["final_state"]

    @staticmethod
    def backward(ctx, do, dht):  # noqa: D102
        from gdkvm.ops.gated_delta.chunk_bwd import chunk_bwd

        q, k, v, gc, beta, t_inv, a, w, states, pseudo = ctx.saved_tensors
        scale, chunk_size, g_dtype, beta_dtype, h0_dtype = ctx.meta
        saved = {"t_inv": t_inv, "a": a, "w": w, "states": states, "pseudo": pseudo}
        dht = None if dht is None else dht.float().contiguous()
        dq, dk, dv, dg, dbeta, dh0 = chunk_bwd(
            saved, q, k, v, gc, beta, scale, do.to(q.dtype).contiguous(), dht, h0_dtype is not None, chunk_size
        )
        dh0 = None if dh0 is None else dh0.to(h0_dtype)
        return dq, dk, dv, dg.to(g_dtype), dbeta.to(beta_dtype), None, dh0, None, None, None


def default_chunk_size(key_dim: int, dtype: torch.dtype) -> int:
    """64, or 32 for K > 128 (K > 64 with fp32 inputs): larger backward tiles would not fit in an H100's shared
    memory."""
    return 64 if key_dim <= (64 if dtype == torch.float32 else 128) else 32


def chunk_gated_delta_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    *,
    scale: float,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The Triton path without validation (inputs as in ``chunk_gated_delta``). ``chunk_size`` in {16, 32, 64};
    None picks 64, or 32 for K > 128 (K > 64 with fp32 inputs): larger backward tiles would not fit in an H100's
    shared memory."""
    if chunk_size is None:
        chunk_size = default_chunk_size(q.shape[-1], q.dtype)
    if chunk_size not in (16, 32, 64):
        raise InputError(f"chunk_size must be 16, 32 or 64, got {chunk_size}")
    inputs = (q, k, v, g, beta, initial_state)
    # Under no_grad, Function.forward still sees needs_input_grad; decide here whether the backward state is kept.
    save = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in inputs)
    return _ChunkGatedDelta.apply(q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size, save)


def chunk_gated_delta(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    *,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gated delta rule over tokens, computed chunkwise (64 tokens a chunk) with the UT / WY representation.

    Recurrence per (batch, head): ``S_t = (I - beta_t k_t k_t^T) diag(exp(g_t)) S_{t-1} + beta_t k_t v_t^T`` and
    ``o_t = S_t^T (scale * q_t)``. Differentiable in every input (q, k, v, g, beta, initial_state).

    Args:
        q: [B, T, H, K] queries (fp32, bf16 or fp16).
        k: [B, T, H, K] keys, same dtype; L2-normalised keys keep every step contractive.
        v: [B, T, H, V] values, same dtype; any V.
        g: [B, T, H] log-decay per head, or [B, T, H, K] log-decay per key channel (KDA); <= 0, read in fp32.
        beta: [B, T, H] write strength in (0, 1).
        scale: query scale; defaults to K ** -0.5.
        initial_state: [B, H, K, V] state before the first token (read as fp32), or None for zeros.
        output_final_state: whether to return the state after the last token.
        backend: "auto" (Triton on CUDA tensors, the torch loop on CPU), "triton" (also on CPU through the Triton
            interpreter, for tests) or "naive".

    Returns:
        o: [B, T, H, V] in the dtype of q.
        final_state: [B, H, K, V] fp32 state after the last token, or None.

    Raises:
        InputError: on wrong shapes, dtypes, devices, K > 256 or an unknown backend.
    """
    if backend not in _BACKENDS:
        raise InputError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    _validate(q, k, v, g, beta, initial_state)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    use_triton = backend == "triton" or (backend == "auto" and q.is_cuda)
    if q.dtype == torch.float64 and use_triton:
        raise InputError("float64 inputs run only on backend='naive' (the kernels compute in fp32 at most)")
    if not use_triton or q.shape[1] == 0:
        o, state = naive_recurrent_gated_delta(
            q, k, v, g, beta, scale=scale, initial_state=initial_state, output_final_state=output_final_state
        )
        return o, (state.float() if state is not None and q.dtype != torch.float64 else state)
    from gdkvm.ops._host import interpreting

    if not q.is_cuda and not interpreting():
        raise InputError("backend='triton' on CPU tensors needs TRITON_INTERPRET=1 set before gdkvm is imported")
    return chunk_gated_delta_triton(
        q, k, v, g, beta, scale=scale, initial_state=initial_state, output_final_state=output_final_state
    )
