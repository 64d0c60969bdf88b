"""Tests of gdkvm.model.losses: values by hand, labelled-frame masking, auxiliary terms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gdkvm.model.losses import SegmentationLoss, soft_dice_loss


def test_soft_dice_by_hand():
    # 2 pixels, class-1 probs 1 and 0 (huge logits); target 1 on the first only -> Dice (2*1+s)/(1+1+s) = 1 with s=1.
    logits = torch.tensor([[[[-50.0, 50.0]], [[50.0, -50.0]]]])  # [1, 2, 1, 2]: pixel 0 -> class 1, pixel 1 -> bg
    assert soft_dice_loss(logits, torch.tensor([[[1, 0]]])).item() == pytest.approx(0.0, abs=1e-6)
    # Prediction says class 1 on pixel 0, truth on pixel 1: (0 + 1) / (1 + 1 + 1) -> loss 2/3.
    assert soft_dice_loss(logits, torch.tensor([[[0, 1]]])).item() == pytest.approx(2 / 3, abs=1e-6)
    # Uniform 0.5 probabilities on 4 pixels, truth on 2: (2*1 + 1) / (2 + 2 + 1) = 0.6 -> loss 0.4.
    flat = torch.zeros(1, 2, 2, 2)
    assert soft_dice_loss(flat, torch.tensor([[[1, 1], [0, 0]]])).item() == pytest.approx(0.4, abs=1e-6)


def _batch(b: int = 2, t: int = 3, c: int = 1, hw: int = 8):
    logits = torch.randn(b, t, c + 1, hw, hw, requires_grad=True)
    masks = torch.randint(0, c + 1, (b, t, hw, hw))
    return logits, masks


def test_only_labelled_frames_count():
    logits, masks = _batch()
    labelled = torch.tensor([[True, False, True], [False, False, True]])
    out = SegmentationLoss()(logits, masks, labelled)
    sel_logits, sel_masks = logits[labelled], masks[labelled]
    ce = F.cross_entropy(sel_logits, sel_masks)
    assert out["ce"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(ce.item() + soft_dice_loss(sel_logits, sel_masks).item(), rel=1e-5)
    out["loss"].backward()
    assert logits.grad[~labelled].abs().sum() == 0 and logits.grad[labelled].abs().sum() > 0
    # changing an unlabelled frame's mask changes nothing
    masks2 = masks.clone()
    masks2[0, 1] = 1 - masks2[0, 1]
    assert SegmentationLoss()(logits, masks2, labelled)["loss"].item() == pytest.approx(out["loss"].item())


def test_no_labelled_frame_gives_zero_with_graph():
    logits, masks = _batch()
    out = SegmentationLoss()(logits, masks, torch.zeros(2, 3, dtype=torch.bool))
    assert out["loss"].item() == 0.0 and out["loss"].requires_grad
    out["loss"].backward()


def test_aux_terms_weighted_and_resized():
    logits, masks = _batch(c=2)
    labelled = torch.ones(2, 3, dtype=torch.bool)
    aux = torch.randn(2, 3, 3, 4, 4)
    base = SegmentationLoss(aux_weight=0.01)(logits, masks, labelled)
    with_aux = SegmentationLoss(aux_weight=0.01)(logits, masks, labelled, aux=[aux, aux])
    up = F.interpolate(aux.flatten(0, 1), size=(8, 8), mode="bilinear", align_corners=False)
    one = F.cross_entropy(up, masks.flatten(0, 1)) + soft_dice_loss(up, masks.flatten(0, 1))
    assert with_aux["aux"].item() == pytest.approx(2 * 0.01 * one.item(), rel=1e-5)
    assert with_aux["loss"].item() == pytest.approx(base["loss"].item() + with_aux["aux"].item(), rel=1e-5)


def test_perfect_prediction_has_small_loss_and_shapes_checked():
    masks = torch.randint(0, 2, (1, 2, 8, 8))
    logits = F.one_hot(masks, 2).permute(0, 1, 4, 2, 3).float() * 40 - 20
    out = SegmentationLoss()(logits, masks, torch.ones(1, 2, dtype=torch.bool))
    assert out["loss"].item() < 1e-3 and not math.isnan(out["loss"].item())
    with pytest.raises(ValueError, match="labelled"):
        SegmentationLoss()(logits, masks, torch.ones(2, dtype=torch.bool))
