"""Sensory memory: a convolutional GRU-like hidden state at stride 16 (Cutie's sensory memory).

The same updater serves two places: after the value encoder (input: the frame's value features) and, with value
feedback on, after the decoder (inputs: the decoder's stride-16/8/4 features and the stride-4 logits, each
area-pooled to stride 16 and projected). Update: ``h' = f * h * (1 - u) + u * tanh(c)`` with forget gate f, update
gate u and candidate c from one 3x3 conv of [inputs, h].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gdkvm.model.blocks import downsample_to


class SensoryUpdater(nn.Module):
    """GRU-like update of the sensory state from one or more feature maps.

    Args:
        in_dims: channels of each input map (any stride that divides down to the sensory map's size).
        mid_dim: width the inputs are projected to and summed at.
        sensory_dim: channels of the sensory state.
    """

    def __init__(self, in_dims: Sequence[int], mid_dim: int, sensory_dim: int) -> None:
        super().__init__()
        self.projs = nn.ModuleList(nn.Conv2d(d, mid_dim, 1) for d in in_dims)
        self.transform = nn.Conv2d(mid_dim + sensory_dim, 3 * sensory_dim, 3, padding=1)
        nn.init.xavier_normal_(self.transform.weight)
        self.sensory_dim = sensory_dim

    def forward(self, feats: Sequence[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """Update the sensory state.

        Args:
            feats: one map per ``in_dims`` entry, each [B, in_dims[i], H_i, W_i] with (H_i, W_i) a multiple of h's size.
            h: [B, sensory_dim, h, w] current sensory state.

        Returns:
            [B, sensory_dim, h, w] new sensory state.
        """
        size = tuple(h.shape[-2:])
        x = sum(proj(downsample_to(f, size)) for proj, f in zip(self.projs, feats))
        values = self.transform(torch.cat([x, h.to(x.dtype)], dim=1))
        d = self.sensory_dim
        forget = torch.sigmoid(values[:, :d])
        update = torch.sigmoid(values[:, d : 2 * d])
        cand = torch.tanh(values[:, 2 * d :])
        return forget * h * (1.0 - update) + update * cand
