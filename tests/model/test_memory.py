"""LKVA memory: clip write == streaming steps, read-after-write semantics, one token-op call per clip, gradients."""

from __future__ import annotations

import pytest
import torch

import gdkvm.ops.gated_delta as token_ops
from gdkvm.model import build_model
from gdkvm.model.memory import LKVAMemory


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(mem: LKVAMemory, b: int = 2, t: int = 4, n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    key = torch.randn(b * t, mem.key_dim, 3, n // 3)
    k = mem.phi(key).unflatten(0, (b, t))
    v = torch.randn(b, t, n, mem.value_dim)
    return k, v


@pytest.mark.parametrize("rule", ["frame", "token"])
def test_phi_and_state_shapes(rule: str) -> None:
    mem = LKVAMemory(16, 24, 4, rule)
    k = mem.phi(torch.randn(2, 16, 2, 3))
    assert k.shape == (2, 6, 16)
    if rule == "frame":
        assert torch.allclose(k.sum(-1), torch.ones(2, 6)) and (k >= 0).all()
        assert mem.init_state(2).shape == (2, 16, 24)
    else:
        assert torch.allclose(k.norm(dim=-1), torch.ones(2, 6), atol=1e-5)
        assert mem.init_state(2).shape == (2, 4, 16, 6)


@pytest.mark.parametrize(
    "rule, gate", [("frame", "head"), ("token", "head"), ("token", "channel")], ids=["frame", "token", "token-kda"]
)
def test_clip_write_equals_steps_and_read_after_write(rule: str, gate: str) -> None:
    mem = LKVAMemory(16, 24, 4, rule, token_gate=gate)
    k, v = _inputs(mem)
    state0 = mem.init_state(2)
    with torch.no_grad():
        o, final = mem.write(k, v, state0)
        state = state0
        for t in range(k.shape[1]):
            o_t, new_state = mem.step(k[:, t], v[:, t], state)
            assert torch.allclose(o_t, o[:, t], atol=1e-4, rtol=1e-4)
            # the readout of frame t is the state AFTER all of frame t's pixels, queried by the frame's keys
            assert torch.allclose(mem.read(k[:, t], new_state), o_t, atol=1e-4, rtol=1e-4)
            state = new_state
    assert torch.allclose(state, final, atol=1e-4, rtol=1e-4)
    assert o.shape == v.shape and final.shape == state0.shape


def test_token_rule_without_feedback_is_one_op_call_per_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = token_ops.chunk_gated_delta

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(token_ops, "chunk_gated_delta", counting)
    frames = torch.rand(2, 3, 1, 32, 32)
    model = build_model("small", update_rule="token", value_feedback=False)
    model(frames).sum().backward()
    assert len(calls) == 1
    n = (32 // 16) ** 2
    assert calls[0] == (2, 3 * 2 * n, 4, 16)  # [B, T * (N writes + N reads), H, Dk]
    calls.clear()
    build_model("small", update_rule="token", value_feedback=True)(frames)
    assert len(calls) == 3  # value feedback: one call per frame, state carried


@pytest.mark.parametrize("gate", ["head", "channel"])
def test_token_rule_gradients_reach_gates(gate: str) -> None:
    model = build_model("small", update_rule="token", value_feedback=True, token_gate=gate)
    logits, aux = model(torch.rand(1, 3, 1, 32, 32), return_aux=True)
    (logits.square().mean() + sum(a.square().mean() for a in aux.values())).backward()
    for name in ("memory.beta_proj.weight", "memory.alpha_proj.weight", "memory.a_log", "memory.dt_bias"):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert all(p.grad is not None for p in model.parameters())


def test_token_rule_state_stays_bounded_over_200_frames() -> None:
    """L2-normalised keys make every token update contractive: the state does not blow up on long clips."""
    mem = LKVAMemory(8, 8, 2, "token")
    k, v = _inputs(mem, b=1, t=200, n=6)
    with torch.no_grad():
        o, state = mem.write(k, v, mem.init_state(1))
    assert torch.isfinite(o).all() and torch.isfinite(state).all()
    assert state.abs().max() < 10 * v.abs().max()
    assert o.abs().max() < 10 * v.abs().max()


def test_frame_rule_gradient_flows_through_carried_state() -> None:
    mem = LKVAMemory(8, 8, 2, "frame")
    k, v = _inputs(mem, b=1, t=3, n=6)
    v.requires_grad_(True)
    state = mem.init_state(1)
    for t in range(3):
        o_t, state = mem.step(k[:, t], v[:, t], state)
    o_t.sum().backward()  # the last readout depends on frame 0's value only through the state
    assert v.grad[:, 0].abs().sum() > 0
    assert mem.w_beta.grad.abs().sum() > 0 and mem.w_alpha.grad.abs().sum() > 0
