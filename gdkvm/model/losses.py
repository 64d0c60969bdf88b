"""Training loss of GDKVM: cross-entropy + soft Dice on the labelled frames only, plus optional auxiliary terms.

Echo data sets label a few frames per clip (EchoNet-Dynamic: ED and ES; CAMUS 2019: ED and ES; CAMUS 2023 half
sequences: every frame), so the loss only looks at frames whose ``labelled`` flag is set; unlabelled frames carry
all-zero masks that must not be learnt as background.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Mean soft Dice loss over images and foreground classes.

    Args:
        logits: [N, C + 1, H, W] float class logits (channel 0 background).
        target: [N, H, W] int64 label ids in 0..C.
        smooth: added to numerator and denominator (an image with empty class and empty prediction scores ~0 loss).

    Returns:
        scalar tensor, 1 - mean over (image, foreground class) of (2 |P G| + s) / (|P| + |G| + s).
    """
    probs = logits.float().softmax(dim=1)[:, 1:]
    onehot = F.one_hot(target.long(), logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
    inter = (probs * onehot).sum(dim=(2, 3))
    sizes = probs.sum(dim=(2, 3)) + onehot.sum(dim=(2, 3))
    return 1.0 - ((2.0 * inter + smooth) / (sizes + smooth)).mean()


class SegmentationLoss(nn.Module):
    """CE + soft Dice on labelled frames, plus ``aux_weight`` times the same on each auxiliary logit map.

    Args:
        ce_weight: weight of the pixel-wise cross-entropy.
        dice_weight: weight of the soft Dice loss (foreground classes).
        aux_weight: weight of each auxiliary output's (CE + Dice) term (the paper's deep supervision uses 0.01).
        smooth: soft Dice smoothing constant.
    """

    def __init__(
        self, ce_weight: float = 1.0, dice_weight: float = 1.0, aux_weight: float = 0.01, smooth: float = 1.0
    ) -> None:
        super().__init__()
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight
        self.aux_weight = aux_weight
        self.smooth = smooth

    def _terms(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(CE, Dice) of [N, C + 1, h, w] logits against [N, H, W] labels (logits resized bilinearly if needed)."""
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
        ce = F.cross_entropy(logits.float(), target.long())
        return ce, soft_dice_loss(logits, target, self.smooth)

    def forward(
        self,
        logits: torch.Tensor,
        masks: torch.Tensor,
        labelled: torch.Tensor,
        aux: Sequence[torch.Tensor] = (),
    ) -> dict[str, torch.Tensor]:
        """Loss of one batch.

        Args:
            logits: [B, T, C + 1, H, W] float main logits.
            masks: [B, T, H, W] int64 label ids in 0..C.
            labelled: [B, T] bool, frames that have a ground-truth mask.
            aux: auxiliary logits, each [B, T, C + 1, h, w] (any h, w; resized to H, W).

        Returns:
            dict of scalar tensors: ``loss`` (total, differentiable), ``ce``, ``dice`` (main output) and ``aux``
            (weighted auxiliary sum, 0 without aux). With no labelled frame in the batch every term is 0 and
            ``loss`` stays attached to the graph.
        """
        if logits.ndim != 5 or masks.shape != logits.shape[:2] + logits.shape[3:] or labelled.shape != logits.shape[:2]:
            raise ValueError(
                "expected logits [B, T, C+1, H, W], masks [B, T, H, W], labelled [B, T]; got "
                f"{tuple(logits.shape)}, {tuple(masks.shape)}, {tuple(labelled.shape)}"
            )
        sel = labelled.bool()
        zero = logits.sum() * 0.0
        if not bool(sel.any()):
            return {"loss": zero, "ce": zero.detach(), "dice": zero.detach(), "aux": zero.detach()}
        target = masks[sel]
        ce, dice = self._terms(logits[sel], target)
        aux_total = zero
        for extra in aux:
            aux_ce, aux_dice = self._terms(extra[sel], target)
            aux_total = aux_total + self.aux_weight * (self.ce_weight * aux_ce + self.dice_weight * aux_dice)
        loss = self.ce_weight * ce + self.dice_weight * dice + aux_total
        return {"loss": loss, "ce": ce.detach(), "dice": dice.detach(), "aux": aux_total.detach()}
