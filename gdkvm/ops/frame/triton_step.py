"""Streaming step of the frame rule on Triton: one frame, forward only, from a given state.

It runs the forward launches with T = 1, so a clip streamed frame by frame gives the whole-clip result.
"""

from __future__ import annotations

import torch

from gdkvm.ops.frame.triton_fwd import frame_fwd


def frame_step(
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    w_beta: torch.Tensor,
    w_alpha: torch.Tensor,
    a_log: torch.Tensor,
    dt_bias: torch.Tensor,
    heads: int,
    state: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame.

    Args:
        k_t: [B, N, Dk] contiguous, float32 or bfloat16.
        v_t: [B, N, Dv] contiguous, same dtype.
        w_beta, w_alpha: [Dv, H] contiguous fp32; a_log, dt_bias: [H] contiguous fp32.
        heads: H.
        state: [B, Dk, Dv] contiguous fp32 state after the previous frame, or None at the start of a clip.

    Returns:
        o_t: [B, N, Dv] (dtype of k_t).
        new_state: [B, Dk, Dv] fp32.
    """
    o, states, _, _ = frame_fwd(k_t[:, None], v_t[:, None], w_beta, w_alpha, a_log, dt_bias, heads, state)
    return o[:, 0], states[:, 1].contiguous()
