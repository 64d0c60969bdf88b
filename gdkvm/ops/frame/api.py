"""Public entry points of the frame rule: argument validation and backend choice.

``frame_gated_delta`` runs a whole clip (differentiable), ``frame_gated_delta_step`` one streaming frame (forward
only). Every shape, dtype and device problem is reported here, naming the tensor and its shape, before any kernel runs.
"""

from __future__ import annotations

import functools
import logging
import os

import torch

from gdkvm.errors import InputError
from gdkvm.ops.frame.naive import frame_gated_delta_naive, frame_gated_delta_step_naive

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "naive", "triton")
TRITON_MAX_DK = 128
TRITON_MAX_DV = 512
TRITON_MAX_HEADS = 64  # more heads need [Dk, H] gate tiles beyond an H100's shared memory at Dk = 128
_IO_DTYPES = (torch.float32, torch.bfloat16)


def _shape(x: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in x.shape) + "]"


def _check_tensor(name: str, x: object, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.shape != shape:  # torch.Size is a tuple
        want = "[" + ", ".join(str(s) for s in shape) + "]"
        raise InputError(f"{name} has shape {_shape(x)}, expected {want}")
    if x.device != device:
        raise InputError(f"{name} is on {x.device}, but k is on {device}")
    if not x.is_floating_point():
        raise InputError(f"{name} {_shape(x)} must be floating point, got {x.dtype}")
    return x


def _check_gates(
    dv: int,
    heads: object,
    w_beta: object,
    w_alpha: object,
    a_log: object,
    dt_bias: object,
    device: torch.device,
) -> None:
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
        raise InputError(f"heads must be a positive int, got {heads!r}")
    if dv % heads:
        raise InputError(f"heads={heads} does not divide the value width Dv={dv} of v")
    _check_tensor("w_beta", w_beta, (dv, heads), device)
    _check_tensor("w_alpha", w_alpha, (dv, heads), device)
    _check_tensor("a_log", a_log, (heads,), device)
    _check_tensor("dt_bias", dt_bias, (heads,), device)


def _check_kv(k: object, v: object, ndim: int, names: tuple[str, str], layout: tuple[str, str]) -> None:
    for name, x, lay in zip(names, (k, v), layout):
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != ndim:
            raise InputError(f"{name} must be {lay}, got shape {_shape(x)}")
        if x.dtype not in (*_IO_DTYPES, torch.float64):
            raise InputError(f"{name} {_shape(x)} must be float32 or bfloat16, got {x.dtype}")
        if 0 in x.shape:
            raise InputError(f"{name} has an empty dimension: shape {_shape(x)}")
    if k.shape[:-1] != v.shape[:-1]:
        raise InputError(f"{names[0]} {_shape(k)} and {names[1]} {_shape(v)} disagree before the last dimension")
    if k.dtype != v.dtype:
        raise InputError(f"{names[0]} is {k.dtype} but {names[1]} is {v.dtype}; pass both in one dtype")
    if k.device != v.device:
        raise InputError(f"{names[0]} is on {k.device} but {names[1]} is on {v.device}")


def _resolve_backend(backend: str, k: torch.Tensor, dk: int, dv: int, heads: int) -> str:
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    too_big = dk > TRITON_MAX_DK or dv > TRITON_MAX_DV or heads > TRITON_MAX_HEADS
    if backend == "auto":
        backend = "triton" if k.is_cuda and k.dtype in _IO_DTYPES and _triton_available() else "naive"
        if backend == "triton" and too_big:
            logger.warning(
                "Dk=%d, Dv=%d, heads=%d exceed the Triton kernels' limits; using the torch reference", dk, dv, heads
            )
            backend = "naive"
    if backend == "triton":
        if k.dtype not in _IO_DTYPES:
            raise InputError(f"backend='triton' takes float32 or bfloat16 k and v, got {k.dtype}")
        if too_big:
            raise InputError(
                f"backend='triton' supports Dk <= {TRITON_MAX_DK} and Dv <= {TRITON_MAX_DV}, got Dk={dk}, Dv={dv}"
                f" (and heads <= {TRITON_MAX_HEADS}, got {heads})"
            )
        if not k.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise InputError("backend='triton' on CPU tensors needs TRITON_INTERPRET=1 set before gdkvm is imported")
    return backend


@functools.cache
def _triton_available() -> bool:
    """Whether Triton is installed; asked once (``find_spec`` costs ~20-40 us, on every auto-backend call before)."""
    import importlib.util

    return importlib.util.find_spec("triton") is not None


def frame_gated_delta(
    k: torch.Tensor,
    v: torch.Tensor,
    w_beta: torch.Tensor,
    w_alpha: torch.Tensor,
    a_log: torch.Tensor,
    dt_bias: torch.Tensor,
    *,
    heads: int,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Frame-level gated delta rule (GDKVM's GDR, with exp decay and one head mapping) over a clip.

    For each batch element, frame 0 without an initial state writes S_0 = K_0^T V_0; every other frame writes
    S_t = alpha * (S_{t-1} - beta * (K_t^T K_t S_{t-1})) + beta * (K_t^T V_t) with gates from the previous state,
    beta = sigmoid(S_{t-1} W_beta) and alpha = exp(-exp(a_log) * softplus(S_{t-1} W_alpha + dt_bias)), both [Dk, H]
    and expanded per head to its Dv/H contiguous value channels. Each frame is read out as O_t = K_t S_t.

    Args:
        k: [B, T, N, Dk] float32 or bfloat16 keys (per-pixel; any normalisation, e.g. a softmax, is the caller's).
        v: [B, T, N, Dv] values, same dtype as k.
        w_beta: [Dv, H] write-strength projection.
        w_alpha: [Dv, H] decay projection.
        a_log: [H] log decay rate.
        dt_bias: [H] decay bias.
        heads: H, dividing Dv.
        initial_state: [B, Dk, Dv] state before frame 0 (read as fp32), or None.
        output_final_state: return the state after the last frame.
        backend: "auto" (Triton for CUDA tensors, the torch reference otherwise), "naive" or "triton" (on CPU tensors
            this runs the Triton interpreter, for tests).

    Returns:
        o: [B, T, N, Dv] readouts, dtype of k.
        final_state: [B, Dk, Dv] fp32, or None unless output_final_state.

    Raises:
        InputError: (a ValueError) for any bad shape, dtype, device or backend, naming the tensor and its shape.
    """
    _check_kv(k, v, 4, ("k", "v"), ("[B, T, N, Dk]", "[B, T, N, Dv]"))
    b, _, _, dk = k.shape
    dv = v.shape[-1]
    _check_gates(dv, heads, w_beta, w_alpha, a_log, dt_bias, k.device)
    if initial_state is not None:
        _check_tensor("initial_state", initial_state, (b, dk, dv), k.device)
    if _resolve_backend(backend, k, dk, dv, heads) == "naive":
        return frame_gated_delta_naive(
            k,
            v,
            w_beta,
            w_alpha,
            a_log,
            dt_bias,
            heads=heads,
            initial_state=initial_state,
            output_final_state=output_final_state,
        )
    from gdkvm.ops.frame.autograd import frame_gated_delta_triton

    return frame_gated_delta_triton(
        k,
        v,
        w_beta,
        w_alpha,
        a_log,
        dt_bias,
        heads=heads,
        initial_state=initial_state,
        output_final_state=output_final_state,
    )


def frame_gated_delta_step(
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    w_beta: torch.Tensor,
    w_alpha: torch.Tensor,
    a_log: torch.Tensor,
    dt_bias: torch.Tensor,
    *,
    heads: int,
    state: torch.Tensor | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One streaming frame of the frame rule (forward only): equals frame t of ``frame_gated_delta``.

    Args:
        k_t: [B, N, Dk] float32 or bfloat16 keys of the frame.
        v_t: [B, N, Dv] values of the frame, same dtype.
        w_beta, w_alpha: [Dv, H] gate projections.
        a_log, dt_bias: [H] decay parameters.
        heads: H, dividing Dv.
        state: [B, Dk, Dv] state after the previous frame (fp32), or None at the first frame of a clip.
        backend: "auto", "naive" or "triton", as in ``frame_gated_delta``.

    Returns:
        o_t: [B, N, Dv] readout, dtype of k_t.
        new_state: [B, Dk, Dv] fp32 state to pass to the next step.

    Raises:
        InputError: for any bad shape, dtype, device or backend, naming the tensor and its shape.
    """
    _check_kv(k_t, v_t, 3, ("k_t", "v_t"), ("[B, N, Dk]", "[B, N, Dv]"))
    b, _, dk = k_t.shape
    dv = v_t.shape[-1]
    _check_gates(dv, heads, w_beta, w_alpha, a_log, dt_bias, k_t.device)
    if state is not None:
        _check_tensor("state", state, (b, dk, dv), k_t.device)
    if _resolve_backend(backend, k_t, dk, dv, heads) == "naive":
        with torch.no_grad():
            return frame_gated_delta_step_naive(k_t, v_t, w_beta, w_alpha, a_log, dt_bias, heads=heads, state=state)
    from gdkvm.ops.frame.autograd import frame_gated_delta_step_triton

    return frame_gated_delta_step_triton(k_t, v_t, w_beta, w_alpha, a_log, dt_bias, heads=heads, state=state)
