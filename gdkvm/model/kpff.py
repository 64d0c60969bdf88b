"""Key projection and KPFF (key-pixel feature fusion, paper eq. 6), all at stride 16.

KPFF mixes three views of a frame: the local key F_K, its global average (GAP, broadcast back) and a pixel-feature
branch F_Pix projected to the key width. One sigmoid gate map decides, per pixel, between the key and the pixel
branch: ``out = G * (F_K + GAP(F_K)) + (1 - G) * F_Pix`` with ``G = sigmoid(conv1x1(F_K + GAP(F_K)))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KeyProjection(nn.Module):
    """Local key from the stride-16 encoder features: a 1x1 conv then a 3x3 conv, no nonlinearity between.

    Args:
        in_dim: channels of the stride-16 features (1024 for ResNet-50).
        hidden_dim: width of the 1x1 projection (256 in the paper).
        key_dim: key channels (64 in the paper).
    """

    def __init__(self, in_dim: int, hidden_dim: int, key_dim: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_dim, hidden_dim, 1)
        self.key = nn.Conv2d(hidden_dim, key_dim, 3, padding=1)

    def forward(self, f16: torch.Tensor) -> torch.Tensor:
        """Args: f16: [B, in_dim, h, w]. Returns: [B, key_dim, h, w] local key F_K."""
        return self.key(self.reduce(f16))


class KPFF(nn.Module):
    """Key-pixel feature fusion.

    Args:
        key_dim: key channels.
        pix_dim: pixel-feature channels.
    """

    def __init__(self, key_dim: int, pix_dim: int) -> None:
        super().__init__()
        self.pix_hidden = nn.Conv2d(pix_dim, pix_dim, 1)
        self.pix_out = nn.Conv2d(pix_dim, key_dim, 3, padding=1)
        self.gate = nn.Conv2d(key_dim, 1, 1)

    def forward(self, key: torch.Tensor, pix: torch.Tensor) -> torch.Tensor:
        """Fuse the local key with its global context and the pixel features.

        Args:
            key: [B, key_dim, h, w] local key F_K.
            pix: [B, pix_dim, h, w] pixel features.

        Returns:
            [B, key_dim, h, w] fused key (before the feature map phi).
        """
        f_pix = self.pix_out(F.relu(self.pix_hidden(pix)))
        f = key + key.mean(dim=(2, 3), keepdim=True)
        g = torch.sigmoid(self.gate(f))
        return g * f + (1.0 - g) * f_pix
