"""Plain torch reference of the frame rule: the test oracle and the CPU path.

Everything is computed in fp32 (or in float64 when the inputs are float64, for gradcheck); the output is cast back to
the dtype of ``k``. Autograd differentiates straight through the loop, so this module has no backward of its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def frame_gates(
    state: torch.Tensor,
    w_beta: torch.Tensor,
    w_alpha: torch.Tensor,
    a_log: torch.Tensor,
    dt_bias: torch.Tensor,
    heads: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Write strength and decay of one frame, computed from the previous state.

    Args:
        state: [B, Dk, Dv] previous state S_{t-1}.
        w_beta: [Dv, H] projection of each state row to the write-strength logits.
        w_alpha: [Dv, H] projection of each state row to the decay logits.
        a_log: [H] log of the decay rate A.
        dt_bias: [H] bias added to the decay logits.
        heads: H; head h owns the value channels h*Dv/H .. (h+1)*Dv/H - 1.

    Returns:
        beta: [B, Dk, Dv] sigmoid(S W_beta), expanded per head to its value channels.
        alpha: [B, Dk, Dv] exp(-exp(a_log) * softplus(S W_alpha + dt_bias)), expanded the same way.
    """
    head_dim = state.shape[-1] // heads
    beta = torch.sigmoid(state @ w_beta)
    g = -torch.exp(a_log) * F.softplus(state @ w_alpha + dt_bias)
    alpha = torch.exp(g)
    return beta.repeat_interleave(head_dim, dim=-1), alpha.repeat_interleave(head_dim, dim=-1)


def frame_update(
    k: torch.Tensor,
    v: torch.Tensor,
    state: torch.Tensor | None,
    w_beta: torch.Tensor,
    w_alpha: torch.Tensor,
    a_log: torch.Tensor,
    dt_bias: torch.Tensor,
    heads: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame of the rule: write all N pixels of the frame at once, then read them out.

    Args:
        k: [B, N, Dk] keys of the frame (compute dtype).
        v: [B, N, Dv] values of the frame (compute dtype).
        state: [B, Dk, Dv] previous state, or None for the first frame of a clip (then S = K^T V).
        w_beta, w_alpha: [Dv, H] gate projections.
        a_log, dt_bias: [H] decay parameters.
        heads: number of heads H.

    Returns:
        o: [B, N, Dv] readout K S_t.
        new_state: [B, Dk, Dv] S_t.
    """
    kv = k.transpose(-1, -2) @ v
    if state is None:
        new_state = kv
    else:
        beta, alpha = frame_gates(state, w_beta, w_alpha, a_log, dt_bias, heads)
        gram = k.transpose(-1, -2) @ k
        new_state = alpha * (state - beta * (gram @ state)) + beta * kv
    return k @ new_state, new_state


def _compute_dtype(k: torch.Tensor) -> torch.dtype:
    return torch.float64 if k.dtype == torch.float64 else torch.float32


def frame_gated_delta_naive(
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
    """Frame rule over a whole clip, frame by frame (no validation; see ``gdkvm.ops.frame.api``).

    Args:
        k: [B, T, N, Dk] keys.
        v: [B, T, N, Dv] values.
        w_beta, w_alpha: [Dv, H] gate projections.
        a_log, dt_bias: [H] decay parameters.
        heads: number of heads H.
        initial_state: [B, Dk, Dv] state before frame 0, or None (frame 0 then writes S = K^T V).
        output_final_state: whether to return S_{T-1}.

    Returns:
        o: [B, T, N, Dv] readouts in the dtype of ``k``.
        final_state: [B, Dk, Dv] fp32 (float64 for float64 inputs) state after the last frame, or None.
    """
    dtype = _compute_dtype(k)
    params = [p.to(dtype) for p in (w_beta, w_alpha, a_log, dt_bias)]
    state = None if initial_state is None else initial_state.to(dtype)
    outs = []
    for t in range(k.shape[1]):
        o_t, state = frame_update(k[:, t].to(dtype), v[:, t].to(dtype), state, *params, heads)
        outs.append(o_t)
    o = torch.stack(outs, dim=1).to(k.dtype)
    return o, (state if output_final_state else None)


def frame_gated_delta_step_naive(
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
    """One streaming frame (no validation).

    Args:
        k_t: [B, N, Dk] keys of the frame.
        v_t: [B, N, Dv] values of the frame.
        w_beta, w_alpha: [Dv, H] gate projections.
        a_log, dt_bias: [H] decay parameters.
        heads: number of heads H.
        state: [B, Dk, Dv] state after the previous frame, or None at the start of a clip.

    Returns:
        o_t: [B, N, Dv] readout in the dtype of ``k_t``.
        new_state: [B, Dk, Dv] fp32 state.
    """
    dtype = _compute_dtype(k_t)
    params = [p.to(dtype) for p in (w_beta, w_alpha, a_log, dt_bias)]
    prev = None if state is None else state.to(dtype)
    o_t, new_state = frame_update(k_t.to(dtype), v_t.to(dtype), prev, *params, heads)
    return o_t.to(k_t.dtype), new_state
