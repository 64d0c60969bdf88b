"""``torch.autograd.Function`` tying the Triton forward and backward, and the Triton streaming step.

Called by ``gdkvm.ops.frame.api`` after validation; these functions assume valid inputs.
"""

from __future__ import annotations

import torch

from gdkvm.ops.frame.triton_bwd import frame_bwd
from gdkvm.ops.frame.triton_fwd_fused import frame_forward
from gdkvm.ops.frame.triton_step import frame_step


def _fp32(x: torch.Tensor) -> torch.Tensor:
    """x as a contiguous fp32 tensor; x itself (no copy, no new autograd node) when it already is one."""
    return x if x.dtype == torch.float32 and x.is_contiguous() else x.detach().to(torch.float32).contiguous()


def _params(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(_fp32(p) for p in tensors)


class FrameGatedDeltaFunction(torch.autograd.Function):
    """Frame rule with the Triton kernels; the backward recomputes gates from the checkpointed per-frame states."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        k: torch.Tensor,
        v: torch.Tensor,
        w_beta: torch.Tensor,
        w_alpha: torch.Tensor,
        a_log: torch.Tensor,
        dt_bias: torch.Tensor,
        initial_state: torch.Tensor | None,
        heads: int,
        output_final_state: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        k, v = k.contiguous(), v.contiguous()
        params = _params(w_beta, w_alpha, a_log, dt_bias)
        h0 = None if initial_state is None else _fp32(initial_state)
        o, states, kk, kv, final = frame_forward(k, v, params, heads, h0, True, output_final_state)
        ctx.save_for_backward(k, v, *params, states, kk, kv)
        ctx.heads = heads
        ctx.has_h0 = h0 is not None
        ctx.h0_dtype = None if initial_state is None else initial_state.dtype
        ctx.param_dtypes = [p.dtype for p in (w_beta, w_alpha, a_log, dt_bias)]
        ctx.set_materialize_grads(False)
        return o, final

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, do: torch.Tensor | None, dfinal: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        k, v, w_beta, w_alpha, a_log, dt_bias, states, kk, kv = ctx.saved_tensors
        do = torch.zeros_like(v) if do is None else do.to(v.dtype).contiguous()
        dfinal = None if dfinal is None else dfinal.to(torch.float32)
        dk, dv, dwb, dwa, dalog, ddt, dh0 = frame_bwd(
            do, dfinal, k, v, (w_beta, w_alpha, a_log, dt_bias), ctx.heads, states, kk, kv, ctx.has_h0
        )
        grads = [g.to(dtype) for g, dtype in zip((dwb, dwa, dalog, ddt), ctx.param_dtypes)]
        dh0 = None if dh0 is None else dh0.to(ctx.h0_dtype)
        return dk, dv, *grads, dh0, None, None


def frame_gated_delta_triton(
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
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Triton frame rule over a clip; shapes as in ``gdkvm.ops.frame.api.frame_gated_delta``.

    Args:
        k: [B, T, N, Dk]; v: [B, T, N, Dv]; w_beta, w_alpha: [Dv, H]; a_log, dt_bias: [H];
        initial_state: [B, Dk, Dv] or None.

    Returns:
        o: [B, T, N, Dv] (dtype of k) and the final state [B, Dk, Dv] fp32 (or None).
    """
    inputs = (k, v, w_beta, w_alpha, a_log, dt_bias, initial_state)
    if torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in inputs):
        return FrameGatedDeltaFunction.apply(*inputs, heads, output_final_state)
    h0 = None if initial_state is None else _fp32(initial_state)
    params = _params(w_beta, w_alpha, a_log, dt_bias)
    o, _, _, _, final = frame_forward(k.contiguous(), v.contiguous(), params, heads, h0, False, output_final_state)
    return o, final


@torch.no_grad()
def frame_gated_delta_step_triton(
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    w_beta: torch.Tensor,
    w_alpha: torch.Tensor,
    a_log: torch.Tensor,
    dt_bias: torch.Tensor,
    *,
    heads: int,
    state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One streaming frame on Triton (forward only).

    Args:
        k_t: [B, N, Dk]; v_t: [B, N, Dv]; w_beta, w_alpha: [Dv, H]; a_log, dt_bias: [H]; state: [B, Dk, Dv] or None.

    Returns:
        o_t: [B, N, Dv] (dtype of k_t) and the new state [B, Dk, Dv] fp32.
    """
    h0 = None if state is None else state.to(torch.float32).contiguous()
    return frame_step(k_t.contiguous(), v_t.contiguous(), *_params(w_beta, w_alpha, a_log, dt_bias), heads, h0)
