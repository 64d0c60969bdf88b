"""LKVA: GDKVM's linear key-value memory, updated by the gated delta rule over frames or over pixel tokens.

The state is one fixed-size matrix per clip, S in R^{Dk x Dv} (64 x 256 in the paper: 8 heads of 32 value channels).
Two update rules share this module's interface (``write`` for a clip, ``step`` for one streaming frame):

* ``"frame"`` (the paper's GDR, fixed form): all N pixels of frame t are written at once with gates computed from the
  previous state (``gdkvm.ops.frame_gated_delta``); keys are a softmax over the Dk channels of each pixel.
* ``"token"`` (issue 7): the frame's pixels are written one after another as tokens of the DeltaNet/Gated-DeltaNet
  recurrence ``S <- (I - b k k^T) diag(a) S + b k v^T`` (``gdkvm.ops.chunk_gated_delta``); keys are L2-normalised
  (||k|| = 1 makes every update contractive), the per-token gates come from the pixel's value through small linear
  heads, and the per-head log decay is divided by N so that a whole frame decays like one frame-rule step.

Readout semantics (both rules): a frame is read AFTER all of its pixels are written, O_t[p] = S_t^T k_p, with the
frame's own key as the query. For the token rule this is done inside ONE ``chunk_gated_delta`` call per clip by
appending, after each frame's N write tokens, N read tokens (q = k_p, beta = 0, g = 0, v = 0): they leave the state
unchanged and their outputs are exactly S_t^T k_p. The clip is then one sequence of T * 2N tokens (parallel over time
when value feedback is off), and streaming continues from the state with the same 2N tokens per frame.

The state before frame 0 is an explicit zero matrix (static shapes for CUDA graphs; with the frame rule frame 0 then
writes beta_0 K^T V with beta_0 = sigmoid(0) = 1/2 rather than K^T V).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

UPDATE_RULES = ("frame", "token")


def _init_decay(a_log: torch.Tensor, dt_bias: torch.Tensor) -> None:
    """Mamba2 / Gated DeltaNet initialisation: A ~ U(1, 16), dt log-uniform in [1e-3, 0.1] (floor 1e-4)."""
    with torch.no_grad():
        a_log.copy_(torch.empty_like(a_log).uniform_(1.0, 16.0).log())
        dt = torch.exp(torch.rand_like(dt_bias) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus


class LKVAMemory(nn.Module):
    """Gated-delta-rule key-value memory.

    Args:
        key_dim: Dk, key channels.
        value_dim: Dv, value channels.
        heads: H gate heads; head h owns value channels h*Dv/H .. (h+1)*Dv/H - 1.
        update_rule: ``"frame"`` or ``"token"`` (see the module docstring).
        backend: backend of the ops (``"auto"``, ``"naive"``, ``"triton"``).
        token_gate: token rule only: log decay per head (``"head"``, Gated DeltaNet) or per head and key channel
            (``"channel"``, Kimi Delta Attention's diagonal decay).
    """

    def __init__(
        self,
        key_dim: int,
        value_dim: int,
        heads: int,
        update_rule: str = "frame",
        backend: str = "auto",
        token_gate: str = "head",
    ) -> None:
        super().__init__()
        if token_gate not in ("head", "channel"):
            raise ValueError(f"token_gate must be 'head' or 'channel', got {token_gate!r}")
        self.token_gate = token_gate
        if update_rule not in UPDATE_RULES:
            raise ValueError(f"update_rule must be one of {UPDATE_RULES}, got {update_rule!r}")
        if value_dim % heads:
            raise ValueError(f"heads={heads} must divide value_dim={value_dim}")
        self.key_dim, self.value_dim, self.heads = key_dim, value_dim, heads
        self.update_rule, self.backend = update_rule, backend
        self.a_log = nn.Parameter(torch.zeros(heads))
        self.dt_bias = nn.Parameter(torch.zeros(heads))
        _init_decay(self.a_log, self.dt_bias)
        if update_rule == "frame":
            self.w_beta = nn.Parameter(torch.randn(value_dim, heads) * 0.02)
            self.w_alpha = nn.Parameter(torch.randn(value_dim, heads) * 0.02)
        else:
            self.beta_proj = nn.Linear(value_dim, heads)
            self.alpha_proj = nn.Linear(value_dim, heads * (key_dim if token_gate == "channel" else 1))
            for lin in (self.beta_proj, self.alpha_proj):
                nn.init.normal_(lin.weight, std=0.02)
                nn.init.zeros_(lin.bias)

    def phi(self, key: torch.Tensor) -> torch.Tensor:
        """Feature map of the keys: softmax over channels (frame rule) or L2 normalisation (token rule).

        Args:
            key: [B, Dk, h, w] fused key map.

        Returns:
            [B, N, Dk] per-pixel keys (N = h * w), float32.
        """
        k = key.float().flatten(2).transpose(1, 2)
        if self.update_rule == "frame":
            return torch.softmax(k, dim=-1)
        return F.normalize(k, dim=-1, eps=1e-6)

    def init_state(self, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Zero state before frame 0.

        Returns:
            frame rule: [B, Dk, Dv] fp32; token rule: [B, H, Dk, Dv/H] fp32.
        """
        if self.update_rule == "frame":
            return torch.zeros(batch, self.key_dim, self.value_dim, device=device)
        return torch.zeros(batch, self.heads, self.key_dim, self.value_dim // self.heads, device=device)

    def write(self, k: torch.Tensor, v: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write T frames (differentiable, one op call) and read each frame after its write.

        Args:
            k: [B, T, N, Dk] keys from ``phi``.
            v: [B, T, N, Dv] values.
            state: state before the first of these frames (``init_state`` layout).

        Returns:
            o: [B, T, N, Dv] float32 readouts; new_state: state after the last frame.
        """
        v = v.float()
        if self.update_rule == "token":
            return self._write_tokens(k, v, state)
        from gdkvm.ops import frame_gated_delta

        o, new_state = frame_gated_delta(
            k, v, *self._frame_params(), heads=self.heads, initial_state=state, output_final_state=True,
            backend=self.backend,
        )  # fmt: skip
        return o, new_state

    def step(self, k: torch.Tensor, v: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame. Uses the forward-only streaming op when no gradient is needed, else ``write`` with T = 1.

        Args:
            k: [B, N, Dk] keys from ``phi``.
            v: [B, N, Dv] values.
            state: state after the previous frame.

        Returns:
            o: [B, N, Dv] float32 readout; new_state: state after this frame.
        """
        if self.update_rule == "frame" and not (torch.is_grad_enabled() and self._needs_grad(v, state)):
            from gdkvm.ops import frame_gated_delta_step

            return frame_gated_delta_step(
                k, v.float(), *self._frame_params(), heads=self.heads, state=state, backend=self.backend
            )
        o, new_state = self.write(k[:, None], v[:, None], state)
        return o[:, 0], new_state

    def read(self, k: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Read a state without writing: O[p] = S^T k_p.

        Args:
            k: [B, N, Dk] query keys from ``phi``.
            state: ``init_state`` layout.

        Returns:
            [B, N, Dv] float32 readout.
        """
        if self.update_rule == "frame":
            return k.float() @ state
        o = torch.einsum("bnk,bhkv->bnhv", k.float(), state)
        return o.flatten(2)

    def _needs_grad(self, v: torch.Tensor, state: torch.Tensor) -> bool:
        return v.requires_grad or state.requires_grad or any(p.requires_grad for p in self._frame_params())

    def _frame_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.w_beta, self.w_alpha, self.a_log, self.dt_bias

    def _write_tokens(self, k: torch.Tensor, v: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token rule over T frames: ONE ``chunk_gated_delta`` call on T * 2N tokens (N writes, N reads per frame)."""
        from gdkvm.ops import chunk_gated_delta

        b, t, n, dk = k.shape
        h, dh = self.heads, self.value_dim // self.heads
        beta = torch.sigmoid(self.beta_proj(v))  # [B, T, N, H]
        g = self._token_log_decay(v, n)  # [B, T, N, H] or [B, T, N, H, Dk]
        keys = k.float()[:, :, None, :, None, :].expand(b, t, 2, n, h, dk)  # writes and reads share the keys
        vals = torch.stack([v.view(b, t, n, h, dh), torch.zeros_like(v).view(b, t, n, h, dh)], dim=2)
        betas = torch.stack([beta, torch.zeros_like(beta)], dim=2)
        gs = torch.stack([g, torch.zeros_like(g)], dim=2).flatten(0, 3)
        seq = t * 2 * n
        o, new_state = chunk_gated_delta(
            keys.reshape(b, seq, h, dk), keys.reshape(b, seq, h, dk), vals.reshape(b, seq, h, dh),
            gs.unflatten(0, (b, seq)), betas.reshape(b, seq, h), scale=1.0, initial_state=state,
            output_final_state=True, backend=self.backend,
        )  # fmt: skip
        o = o.view(b, t, 2, n, h * dh)[:, :, 1]
        return o.float(), new_state

    def _token_log_decay(self, v: torch.Tensor, n: int) -> torch.Tensor:
        """Per-token log decay -exp(A_log) * softplus(W_a v + dt_bias) / N (a whole frame decays like one frame step).

        Args:
            v: [B, T, N, Dv] values.
            n: N, tokens per frame.

        Returns:
            [B, T, N, H] (``token_gate="head"``) or [B, T, N, H, Dk] (``"channel"``), <= 0.
        """
        logits = self.alpha_proj(v)
        if self.token_gate == "channel":
            logits = logits.unflatten(-1, (self.heads, self.key_dim))
            return -torch.exp(self.a_log)[:, None] * F.softplus(logits + self.dt_bias[:, None]) / n
        return -torch.exp(self.a_log) * F.softplus(logits + self.dt_bias) / n
