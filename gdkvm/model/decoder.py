"""Multi-scale mask decoder: stride 16 -> 8 -> 4 -> full resolution, with KPFF-style gated skip fusion.

At each upsampling stage the upsampled map U and the projected encoder skip S are fused like KPFF fuses its key and
pixel branches: ``F = U + S``, ``G = sigmoid(conv1x1(F + GAP(F)))`` (one gate map), ``X = G * U + (1 - G) * S``,
then a residual conv block. Stride-4 logits are upsampled bilinearly to full resolution and corrected by a light
full-resolution head that sees the frame itself (a skip at stride 1), so thin boundaries are not limited to the
stride-4 grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gdkvm.model.blocks import ResBlock


class GatedUpBlock(nn.Module):
    """x2 bilinear upsampling, gated fusion with an encoder skip, residual block.

    Args:
        in_dim: channels of the coarse input.
        skip_dim: channels of the encoder skip.
        out_dim: output channels.
    """

    def __init__(self, in_dim: int, skip_dim: int, out_dim: int) -> None:
        super().__init__()
        self.skip_proj = nn.Conv2d(skip_dim, in_dim, 1)
        self.gate = nn.Conv2d(in_dim, 1, 1)
        self.block = ResBlock(in_dim, out_dim)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, in_dim, h, w]; skip: [B, skip_dim, 2h, 2w]. Returns: [B, out_dim, 2h, 2w]."""
        up = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        s = self.skip_proj(skip)
        f = up + s
        g = torch.sigmoid(self.gate(f + f.mean(dim=(2, 3), keepdim=True)))
        return self.block(g * up + (1.0 - g) * s)


class MaskDecoder(nn.Module):
    """Decoder from the refined stride-16 map to full-resolution logits.

    Args:
        in_dim: channels at stride 16.
        skip_dims: (f8 channels, f4 channels) of the key encoder.
        up_dims: output channels of the stride-8 and stride-4 stages.
        full_dim: channels of the full-resolution head.
        num_outputs: C + 1 logit channels.
    """

    def __init__(
        self, in_dim: int, skip_dims: tuple[int, int], up_dims: tuple[int, int], full_dim: int, num_outputs: int
    ) -> None:
        super().__init__()
        self.up8 = GatedUpBlock(in_dim, skip_dims[0], up_dims[0])
        self.up4 = GatedUpBlock(up_dims[0], skip_dims[1], up_dims[1])
        self.pred4 = nn.Conv2d(up_dims[1], num_outputs, 3, padding=1)
        self.full_proj = nn.Conv2d(up_dims[1], full_dim, 1)
        self.full = nn.Sequential(
            nn.Conv2d(full_dim + 1, full_dim, 3, padding=1), nn.GELU(), nn.Conv2d(full_dim, num_outputs, 3, padding=1)
        )

    def forward(
        self, x16: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor, image: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Decode one batch of frames.

        Args:
            x16: [B, in_dim, H/16, W/16] refined features.
            f8: [B, skip_dims[0], H/8, W/8] encoder skip.
            f4: [B, skip_dims[1], H/4, W/4] encoder skip.
            image: [B, 1, H, W] normalised frame.

        Returns:
            logits: [B, C + 1, H, W]; feats: [x16, x8, x4, logits4] for the sensory update
            (x8 [B, up_dims[0], H/8, W/8], x4 [B, up_dims[1], H/4, W/4], logits4 [B, C + 1, H/4, W/4]).
        """
        x8 = self.up8(x16, f8)
        x4 = self.up4(x8, f4)
        logits4 = self.pred4(x4)
        size = image.shape[-2:]
        up = F.interpolate(logits4, size=size, mode="bilinear", align_corners=False)
        full = F.interpolate(self.full_proj(x4), size=size, mode="bilinear", align_corners=False)
        logits = up + self.full(torch.cat([full, image.to(full.dtype)], dim=1))
        return logits, [x16, x8, x4, logits4]
