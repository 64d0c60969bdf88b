"""Small convolutional building blocks shared by the GDKVM stages (channel attention, residual blocks, fusers)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ChannelAttention(nn.Module):
    """ECA-style channel attention: a 1D conv over the pooled channel descriptor, then a sigmoid gate.

    Args:
        dim: number of channels.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        size = int(abs((math.log2(dim) + 1) / 2))
        size = size if size % 2 else size + 1
        self.conv = nn.Conv1d(1, 1, kernel_size=size, padding=(size - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate the channels of ``x``.

        Args:
            x: [B, C, H, W] features.

        Returns:
            [B, C, H, W] gated features.
        """
        w = self.conv(x.mean(dim=(2, 3)).unsqueeze(1)).squeeze(1).sigmoid()
        return x * w[:, :, None, None]


class CAResBlock(nn.Module):
    """Residual block of two 3x3 convs (pre-activation ReLU) with channel attention.

    Args:
        in_dim: input channels.
        out_dim: output channels (a 1x1 conv adapts the shortcut when they differ).
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, out_dim, 3, padding=1)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, padding=1)
        self.attention = ChannelAttention(out_dim)
        self.shortcut = nn.Identity() if in_dim == out_dim else nn.Conv2d(in_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, in_dim, H, W]. Returns: [B, out_dim, H, W]."""
        y = self.conv2(F.relu(self.conv1(F.relu(x))))
        return self.attention(y) + self.shortcut(x)


class ResBlock(nn.Module):
    """Residual block of two 3x3 convs with GELU (the decoder's upsampling stages).

    Args:
        in_dim: input channels.
        out_dim: output channels.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, out_dim, 3, padding=1)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, padding=1)
        self.shortcut = nn.Identity() if in_dim == out_dim else nn.Conv2d(in_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, in_dim, H, W]. Returns: [B, out_dim, H, W]."""
        y = self.conv2(F.gelu(self.conv1(F.gelu(x))))
        return y + self.shortcut(x)


class FeatureFuser(nn.Module):
    """Adds 1x1 projections of two feature maps, then refines the sum with CA residual blocks.

    Args:
        x_dim: channels of the first input (pixel features).
        y_dim: channels of the second input (value or readout).
        out_dim: output channels.
        num_blocks: number of ``CAResBlock``s after the sum.
    """

    def __init__(self, x_dim: int, y_dim: int, out_dim: int, num_blocks: int = 2) -> None:
        super().__init__()
        self.x_transform = nn.Conv2d(x_dim, out_dim, 1)
        self.y_transform = nn.Conv2d(y_dim, out_dim, 1)
        self.blocks = nn.Sequential(*[CAResBlock(out_dim, out_dim) for _ in range(num_blocks)])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, x_dim, h, w]; y: [B, y_dim, h, w]. Returns: [B, out_dim, h, w]."""
        return self.blocks(self.x_transform(x) + self.y_transform(y))


def downsample_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-downsample a map to ``size`` (a no-op when it already has that size).

    Args:
        x: [B, C, H, W] map.
        size: target (h, w), dividing (H, W).

    Returns:
        [B, C, h, w] map.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.adaptive_avg_pool2d(x, size)
