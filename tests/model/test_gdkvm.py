"""GDKVM network: shapes, input validation, clip forward == streaming, gradients, local weights, overfitting."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gdkvm.errors import InputError
from gdkvm.model import GDKVM, MODEL_PRESETS, build_model


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one intra-op thread avoids spin-waiting when the 2 cores are shared (tests run 5-10x faster)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("num_classes", [1, 3], ids=["lv", "lv-myo-la"])
@pytest.mark.parametrize("preset", ["small", "full"])
def test_forward_shapes(preset: str, num_classes: int) -> None:
    model = build_model(preset, num_classes=num_classes).eval()
    frames = torch.rand(2, 2, 1, 32, 48)
    with torch.no_grad():
        logits, aux = model(frames, return_aux=True)
    assert logits.shape == (2, 2, num_classes + 1, 32, 48)
    assert torch.isfinite(logits).all()
    blocks = model.config["transformer_blocks"]
    assert sorted(aux) == sorted(["sensory", *[f"block{i}" for i in range(blocks)]])
    for a in aux.values():
        assert a.shape == (2, 2, num_classes + 1, 2, 3)


def test_parameter_counts() -> None:
    full = build_model("full")
    assert 34e6 < full.num_parameters() < 36.5e6  # paper: 35.2 M
    small = build_model("small")
    assert 2e5 < small.num_parameters() < 2e6
    assert "total" in small.summary()
    assert "params=" in repr(small)
    assert set(MODEL_PRESETS) >= {"full", "small"}


@pytest.mark.parametrize(
    "shape", [(1, 2, 1, 40, 32), (1, 2, 1, 32, 20), (1, 2, 3, 32, 32), (2, 1, 32, 32)], ids=["h40", "w20", "rgb", "4d"]
)
def test_bad_frames_raise_input_error(shape: tuple[int, ...]) -> None:
    model = build_model("small")
    with pytest.raises(InputError):
        model(torch.rand(shape))


def test_integer_frames_raise_input_error() -> None:
    with pytest.raises(InputError, match="float"):
        build_model("small")(torch.zeros(1, 2, 1, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize("value_feedback", [True, False], ids=["feedback", "parallel"])
@pytest.mark.parametrize("num_classes", [1, 3], ids=["c1", "c3"])
def test_clip_forward_equals_streaming(value_feedback: bool, num_classes: int) -> None:
    model = build_model("small", value_feedback=value_feedback, num_classes=num_classes).eval()
    frames = torch.rand(2, 5, 1, 48, 32)
    with torch.no_grad():
        clip = model(frames).softmax(dim=2)
        state = model.init_state(2, 48, 32)
        steps = []
        for t in range(frames.shape[1]):
            logits, new_state = model.step(frames[:, t], state)
            assert new_state.keys() == state.keys()
            assert all(new_state[k].shape == state[k].shape for k in state)
            steps.append(logits.softmax(dim=1))
            state = new_state
    assert (torch.stack(steps, dim=1) - clip).abs().max() < 1e-4


def test_forward_clip_continues_from_state() -> None:
    """Two halves with the carried state give the same result as the whole clip."""
    model = build_model("small", value_feedback=False).eval()
    frames = torch.rand(1, 6, 1, 32, 32)
    with torch.no_grad():
        whole, _, _ = model.forward_clip(frames)
        first, state, _ = model.forward_clip(frames[:, :3])
        second, _, _ = model.forward_clip(frames[:, 3:], state)
    assert (torch.cat([first, second], dim=1) - whole).abs().max() < 1e-4


@pytest.mark.parametrize("value_feedback", [True, False], ids=["feedback", "parallel"])
def test_gradients_reach_every_parameter(value_feedback: bool) -> None:
    model = build_model("small", value_feedback=value_feedback).train()
    logits, aux = model(torch.rand(2, 3, 1, 32, 32), return_aux=True)
    loss = logits.square().mean() + sum(a.square().mean() for a in aux.values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero
    for name in ("memory.w_beta", "memory.w_alpha", "memory.a_log", "memory.dt_bias"):
        assert model.get_parameter(name).grad.abs().sum() > 0


def test_local_backbone_weights(tmp_path) -> None:
    """A torchvision-style RGB state dict loads into the 1-channel key encoder (conv1 averaged)."""
    src = build_model("small").key_encoder
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in src.state_dict().items()}
    state["conv1.weight"] = torch.randn(16, 3, 7, 7)
    state["fc.weight"] = torch.randn(10, 64)  # ignored, like layer4
    path = tmp_path / "resnet.pth"
    torch.save(state, path)
    model = build_model("small", backbone_weights=str(path))
    got = model.key_encoder.state_dict()
    assert torch.allclose(got["conv1.weight"], state["conv1.weight"].mean(dim=1, keepdim=True))
    assert torch.equal(got["layer2.0.conv1.weight"], state["layer2.0.conv1.weight"])


def test_bad_backbone_weights(tmp_path) -> None:
    with pytest.raises(InputError, match="not found"):
        build_model("small", backbone_weights=str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.pth"):
        build_model("small", backbone_weights=str(bad))
    wrong = tmp_path / "wrong.pth"
    torch.save({"layer1.0.conv1.weight": torch.zeros(3, 3, 3, 3)}, wrong)
    with pytest.raises(InputError, match="layer1.0.conv1.weight"):
        build_model("small", backbone_weights=str(wrong))


def synthetic_clip(t: int, size: int, phase: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright-walled dark ellipse (the LV) whose radii change over the clip, on speckle noise.

    Returns:
        frames [T, 1, size, size] in [0, 1]; masks [T, size, size] int64 (1 inside the cavity).
    """
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    frames, masks = [], []
    for i in range(t):
        r = 0.45 + 0.15 * math.cos(2 * math.pi * i / t + phase)
        d = (xx / r) ** 2 + ((yy + 0.1) / (1.3 * r)) ** 2
        cavity = d < 1.0
        wall = (d >= 1.0) & (d < 1.6)
        img = 0.15 + 0.1 * torch.rand(size, size) + 0.55 * wall.float()
        frames.append(img.clamp(0, 1)[None])
        masks.append(cavity.long())
    return torch.stack(frames), torch.stack(masks)


def test_small_model_overfits_two_clips() -> None:
    torch.manual_seed(0)
    clips = [synthetic_clip(4, 64, phase) for phase in (0.0, 1.7)]
    frames = torch.stack([c[0] for c in clips])
    masks = torch.stack([c[1] for c in clips])
    model = build_model("small").train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss_fn(logits: torch.Tensor) -> torch.Tensor:
        flat = logits.flatten(0, 1)
        prob = flat.softmax(dim=1)[:, 1]
        target = masks.flatten(0, 1).float()
        dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
        return F.cross_entropy(flat, masks.flatten(0, 1)) + dice

    losses = []
    for _ in range(40):
        loss = loss_fn(model(frames))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.3 * losses[0], losses
    model.eval()
    with torch.no_grad():
        pred = model(frames).argmax(dim=2)
    inter = ((pred == 1) & (masks == 1)).sum()
    dice = 2 * inter / ((pred == 1).sum() + (masks == 1).sum())
    assert dice > 0.8, float(dice)


def test_model_has_no_lightning_import() -> None:
    import gdkvm.model.gdkvm as mod

    assert isinstance(build_model("small"), GDKVM)
    assert "lightning" not in open(mod.__file__).read()
