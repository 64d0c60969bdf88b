"""ClipTransform: one random draw per clip, identical for every frame and mask; spacing follows the zoom."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from gdkvm.data.transforms import ClipTransform


def _clip(t: int = 6, size: int = 64, same: bool = True) -> dict[str, object]:
    g = torch.Generator().manual_seed(1)
    base = torch.rand(1, 1, size, size, generator=g)
    frames = base.repeat(t, 1, 1, 1) if same else torch.rand(t, 1, size, size, generator=g)
    masks = torch.zeros(t, size, size, dtype=torch.long)
    masks[:, 20:44, 16:48] = 1
    masks[:, 24:30, 20:30] = 2
    return {"frames": frames, "masks": masks, "labelled": torch.ones(t, dtype=torch.bool),
            "spacing": torch.tensor([0.4, 0.2]), "meta": {"id": "x"}}  # fmt: skip


def test_identical_across_frames_and_not_identity() -> None:
    clip = _clip()
    out = ClipTransform(p=1.0, seed=0)(clip)
    assert out["frames"].shape == clip["frames"].shape and out["frames"].dtype == torch.float32
    assert out["masks"].shape == clip["masks"].shape and out["masks"].dtype == torch.int64
    assert torch.equal(out["frames"], out["frames"][:1].expand_as(out["frames"]))  # same gamma, noise, warp
    assert torch.equal(out["masks"], out["masks"][:1].expand_as(out["masks"]))
    assert (out["frames"] - clip["frames"]).abs().mean() > 0.01
    assert not torch.equal(out["masks"], clip["masks"])
    assert set(out["masks"].unique().tolist()) <= {0, 1, 2}  # nearest interpolation keeps label ids
    assert 0.0 <= float(out["frames"].min()) and float(out["frames"].max()) <= 1.0
    assert out["meta"] == clip["meta"] and torch.equal(out["labelled"], clip["labelled"])


def test_geometry_identical_for_different_frames() -> None:
    """Frames differ but the masks are identical: the warp must move every mask the same way."""
    clip = _clip(same=False)
    out = ClipTransform(p=1.0, seed=5)(clip)
    assert torch.equal(out["masks"], out["masks"][:1].expand_as(out["masks"]))
    assert not torch.equal(out["frames"][0], out["frames"][1])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_spacing_follows_zoom(seed: int) -> None:
    clip = _clip()
    transform = ClipTransform(scale=(0.7, 1.3), rotate=0.0, p=1.0, seed=seed)
    out = transform(clip)
    zoom = float(clip["spacing"][0] / out["spacing"][0])
    assert out["spacing"][0] / out["spacing"][1] == pytest.approx(2.0)
    area_ratio = float((out["masks"][0] > 0).sum()) / float((clip["masks"][0] > 0).sum())
    assert area_ratio == pytest.approx(zoom**2, rel=0.12)


def test_draws_change_between_calls() -> None:
    transform = ClipTransform(p=1.0, seed=7)
    a, b = transform(_clip()), transform(_clip())
    assert not torch.equal(a["frames"], b["frames"])


def test_rejects_bad_shapes() -> None:
    clip = _clip()
    clip["frames"] = clip["frames"][:, 0]
    with pytest.raises(ValueError, match=r"expected frames \[T, 1, H, W\]"):
        ClipTransform()(clip)


class _Same(Dataset):
    def __init__(self) -> None:
        self.transform = ClipTransform(p=1.0)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(_clip(t=2, size=32))["frames"][0]


def test_workers_draw_differently() -> None:
    loader = DataLoader(_Same(), batch_size=1, num_workers=2)
    outs = [x[0] for x in loader]
    first_per_worker = [outs[0], outs[1]]  # items 0 and 1 come from different workers
    assert not torch.equal(*first_per_worker)
    assert np.isfinite(torch.stack(outs).numpy()).all()


NEUTRAL = {"gamma": (1.0, 1.0), "brightness": 0.0, "contrast": 0.0, "noise_std": (0.0, 0.0), "scale": (1.0, 1.0),
           "rotate": 0.0}  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [{"gamma": (0.5, 0.5)}, {"contrast": 0.5}, {"brightness": 0.3}, {"noise_std": (0.05, 0.05)}, {"rotate": 20.0}],
    ids=["gamma", "contrast", "brightness", "noise", "rotate"],
)
def test_each_component_acts(change: dict) -> None:
    clip = _clip()
    clip["frames"] = torch.linspace(0, 1, 64 * 64).reshape(1, 1, 64, 64).repeat(6, 1, 1, 1)
    assert torch.allclose(ClipTransform(p=1.0, seed=1, **NEUTRAL)(clip)["frames"], clip["frames"], atol=2 / 255)
    out = ClipTransform(p=1.0, seed=1, **{**NEUTRAL, **change})(clip)
    assert (out["frames"] - clip["frames"]).abs().mean() > 0.01
