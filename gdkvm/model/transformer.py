"""Object summaries and the small object transformer (after Cutie's object-level memory, re-implemented).

* ``ObjectSummarizer``: from a frame's value features, Q learned soft attention maps pool Q summary vectors (first
  half weighted by the foreground probability, second half by the background, when a previous mask is known). The
  model keeps their RUNNING SUMS over all frames seen (feature sums [B, Q, E] and areas [B, Q, 1]), so the object
  memory is fixed-size; the transformer's queries start from sum / area.
* ``ObjectTransformer``: Q queries and the stride-16 pixel map attend to each other in a few blocks (queries read the
  pixels, self-attend and pass an FFN; pixels read the queries and pass a conv FFN). Each block emits aux logits.
  The attention is not masked by the intermediate predictions (a simplification of Cutie's masked attention).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gdkvm.model.blocks import CAResBlock


def sine_position_embedding(
    h: int, w: int, dim: int, device: torch.device, temperature: float = 128.0, scale: float = 32.0
) -> torch.Tensor:
    """2D sine/cosine position embedding of a grid (coordinates normalised to [0, scale]).

    Args:
        h, w: grid size.
        dim: embedding width (a multiple of 4).
        device: where to build it.
        temperature: frequency base.
        scale: range of the normalised coordinates.

    Returns:
        [h * w, dim] float32 embedding (first half from rows, second half from columns).
    """
    quarter = dim // 4
    freqs = temperature ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * scale
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * scale
    py, px = ys[:, None] / freqs, xs[:, None] / freqs  # [h, q], [w, q]
    ey = torch.cat([py.sin(), py.cos()], dim=-1)[:, None].expand(h, w, 2 * quarter)
    ex = torch.cat([px.sin(), px.cos()], dim=-1)[None].expand(h, w, 2 * quarter)
    pe = torch.cat([ey, ex], dim=-1).reshape(h * w, 4 * quarter)
    return F.pad(pe, (0, dim - 4 * quarter))


class ObjectSummarizer(nn.Module):
    """Pools Q summaries of a frame's value features.

    Args:
        value_dim: channels of the value features.
        embed_dim: E, width of the summaries.
        num_summaries: Q (even: half foreground, half background).
    """

    def __init__(self, value_dim: int, embed_dim: int, num_summaries: int) -> None:
        super().__init__()
        if num_summaries % 2:
            raise ValueError(f"num_queries must be even (half foreground, half background), got {num_summaries}")
        self.embed_dim, self.num_summaries = embed_dim, num_summaries
        self.input_proj = nn.Linear(value_dim, embed_dim)
        self.feature_pred = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim))
        self.weights_pred = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, num_summaries)
        )

    def forward(self, value: torch.Tensor, fg: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Summaries of one frame.

        Args:
            value: [B, Dv, h, w] value features.
            fg: [B, 1, h, w] foreground probability at stride 16 paired with this value (the previous
                prediction), or None (unmasked pooling).

        Returns:
            sums: [B, Q, E] weighted feature sums; areas: [B, Q, 1] sums of the weights. Both float32.
        """
        x = self.input_proj(value.flatten(2).transpose(1, 2))  # [B, N, E]
        pe = sine_position_embedding(*value.shape[-2:], self.embed_dim, value.device)
        weights = torch.sigmoid(self.weights_pred(x + pe.to(x.dtype))).float()  # [B, N, Q]
        if fg is not None:
            fg = fg.flatten(2).transpose(1, 2).float()  # [B, N, 1]
            half = self.num_summaries // 2
            weights = weights * torch.cat([fg.expand(-1, -1, half), (1.0 - fg).expand(-1, -1, half)], dim=-1)
        feats = self.feature_pred(x).float()
        return weights.transpose(1, 2) @ feats, weights.sum(dim=1)[..., None]


class TransformerBlock(nn.Module):
    """One query/pixel block (pre-norm attention, residual everywhere).

    Args:
        embed_dim: E.
        heads: attention heads.
        ff_dim: hidden width of the query FFN.
    """

    def __init__(self, embed_dim: int, heads: int, ff_dim: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(embed_dim) for _ in range(5))
        self.q_read = nn.MultiheadAttention(embed_dim, heads, batch_first=True)
        self.q_self = nn.MultiheadAttention(embed_dim, heads, batch_first=True)
        self.q_ffn = nn.Sequential(nn.Linear(embed_dim, ff_dim), nn.GELU(), nn.Linear(ff_dim, embed_dim))
        self.p_read = nn.MultiheadAttention(embed_dim, heads, batch_first=True)
        self.p_ffn = CAResBlock(embed_dim, embed_dim)

    def forward(
        self, q: torch.Tensor, q_pe: torch.Tensor, p: torch.Tensor, p_pe: torch.Tensor, hw: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: q, q_pe: [B, Q, E]; p: [B, N, E]; p_pe: [N, E]; hw: (h, w), N = h * w.
        Returns: q [B, Q, E], p [B, N, E]."""
        n0, n1, n2, n3, n4 = self.norms
        pk = n0(p) + p_pe
        x = n1(q)
        q = q + self.q_read(x + q_pe, pk, n0(p), need_weights=False)[0]
        x = n2(q)
        q = q + self.q_self(x + q_pe, x + q_pe, x, need_weights=False)[0]
        q = q + self.q_ffn(n3(q))
        x = n4(q)
        p = p + self.p_read(n0(p) + p_pe, x + q_pe, x, need_weights=False)[0]
        b, n, e = p.shape
        p_map = self.p_ffn(p.transpose(1, 2).reshape(b, e, *hw))
        return q, p_map.flatten(2).transpose(1, 2)


class ObjectTransformer(nn.Module):
    """Queries initialised from the object summaries refine the stride-16 pixel features.

    Args:
        pixel_dim: channels of the pixel map in and out.
        embed_dim: E, transformer width (also the summaries' width).
        num_blocks: number of ``TransformerBlock``s.
        heads: attention heads.
        num_queries: Q.
        ff_dim: query FFN hidden width.
        num_outputs: C + 1 aux logit channels per block.
    """

    def __init__(
        self, pixel_dim: int, embed_dim: int, num_blocks: int, heads: int, num_queries: int, ff_dim: int,
        num_outputs: int,
    ) -> None:  # fmt: skip
        super().__init__()
        self.embed_dim = embed_dim
        self.pixel_in = nn.Conv2d(pixel_dim, embed_dim, 1)
        self.pixel_out = nn.Conv2d(embed_dim, pixel_dim, 1)
        self.query_init = nn.Parameter(torch.randn(num_queries, embed_dim) / math.sqrt(embed_dim))
        self.query_emb = nn.Parameter(torch.randn(num_queries, embed_dim) / math.sqrt(embed_dim))
        self.summary_to_init = nn.Linear(embed_dim, embed_dim)
        self.summary_to_emb = nn.Linear(embed_dim, embed_dim)
        self.blocks = nn.ModuleList(TransformerBlock(embed_dim, heads, ff_dim) for _ in range(num_blocks))
        self.aux_heads = nn.ModuleList(nn.Conv2d(embed_dim, num_outputs, 1) for _ in range(num_blocks))

    def forward(self, pixel: torch.Tensor, summary: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Refine the pixel map.

        Args:
            pixel: [B, pixel_dim, h, w] fused readout.
            summary: [B, Q, E] object summaries (running sum / running area).

        Returns:
            pixel: [B, pixel_dim, h, w] refined map (residual); aux: one [B, C + 1, h, w] logit map per block.
        """
        b, _, h, w = pixel.shape
        p = self.pixel_in(pixel).flatten(2).transpose(1, 2)
        p_pe = sine_position_embedding(h, w, self.embed_dim, pixel.device).to(p.dtype)
        summary = summary.to(p.dtype)
        q = self.query_init + self.summary_to_init(summary)
        q_pe = self.query_emb + self.summary_to_emb(summary)
        aux = []
        for block, head in zip(self.blocks, self.aux_heads):
            q, p = block(q, q_pe, p, p_pe, (h, w))
            aux.append(head(p.transpose(1, 2).reshape(b, self.embed_dim, h, w)))
        p_map = p.transpose(1, 2).reshape(b, self.embed_dim, h, w)
        return pixel + self.pixel_out(p_map), aux
