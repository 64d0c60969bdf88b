"""The GDKVM network: encoders -> KPFF -> LKVA memory (gated delta rule) -> object transformer -> decoder.

One ``nn.Module`` with stage methods (``encode_key``, ``encode_value``, ``write``, ``read``, ``decode``), a clip
``forward`` for training and ``init_state`` / ``step`` for streaming. The streaming state is a dict of fixed-size
tensors (see ``init_state``), so a clip of any length runs in constant memory and ``step`` has static shapes.

Per frame t (fully automatic: the "previous mask" of frame 0 is all zeros):
1. key encoder (ResNet-50 to stride 16) -> pixel features, local key -> KPFF -> keys k_t (``LKVAMemory.phi``);
2. value encoder (ResNet-18) on [frame t, foreground probabilities predicted at t-1] fused with the pixel features
   -> value v_t; the sensory state and the running object summaries are updated from v_t;
3. the memory writes (k_t, v_t) and reads frame t with its own keys (after the write);
4. readout + sensory (+ previous mask) + pixel features -> object transformer -> decoder -> logits [C + 1, H, W];
   with value feedback the decoder's features also update the sensory state.

With ``value_feedback=False`` nothing depends on the previous prediction, so the clip forward runs every stage batched
over B*T frames and the memory in ONE op call for the whole clip (only the small sensory GRU loops over frames);
``step`` computes exactly the same per frame.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from torch import nn

from gdkvm.errors import InputError
from gdkvm.model.blocks import FeatureFuser, downsample_to
from gdkvm.model.decoder import MaskDecoder
from gdkvm.model.encoders import ResNetTrunk, ValueEncoder, load_backbone_weights
from gdkvm.model.kpff import KPFF, KeyProjection
from gdkvm.model.memory import LKVAMemory
from gdkvm.model.sensory import SensoryUpdater
from gdkvm.model.transformer import ObjectSummarizer, ObjectTransformer

logger = logging.getLogger(__name__)

State = dict[str, torch.Tensor]


class KeyFeatures(NamedTuple):
    """Outputs of ``GDKVM.encode_key`` for a batch of frames (h = H/16, w = W/16, N = h * w)."""

    k: torch.Tensor  # [B, N, Dk] memory keys (after KPFF and the feature map phi)
    pix: torch.Tensor  # [B, pix_dim, h, w] pixel features
    f8: torch.Tensor  # [B, C8, H/8, W/8] encoder skip
    f4: torch.Tensor  # [B, C4, H/4, W/4] encoder skip


class GDKVM(nn.Module):
    """GDKVM echocardiography video segmenter (see the module docstring).

    Args:
        num_classes: C foreground classes (1 = LV cavity; 3 = LV, myocardium, LA). Logits have C + 1 channels.
        value_feedback: feed the previous frame's prediction into the value encoder and the decoder.
        update_rule: memory update, ``"frame"`` (paper's GDR) or ``"token"`` (pixel tokens, chunkwise op).
        token_gate: token rule's log decay per head (``"head"``) or per head and key channel (``"channel"``).
        key_encoder: key encoder architecture (``resnet18|34|50|101``).
        key_width: stem/layer1 width of the key encoder (64 = standard).
        key_depths: blocks in layer1..3 of the key encoder (None: the architecture's).
        value_encoder: value encoder architecture.
        value_width: base width of the value encoder.
        value_depths: blocks in layer1..3 of the value encoder (None: the architecture's).
        pix_dim: pixel-feature channels (and the key projection's hidden width).
        key_dim: Dk, memory key channels.
        value_dim: Dv, memory value channels.
        heads: gate heads of the memory (Dv / heads value channels each).
        sensory_dim: channels of the sensory state.
        embed_dim: object transformer / summary width.
        transformer_blocks: number of object transformer blocks.
        transformer_heads: attention heads of the object transformer.
        num_queries: object queries / summaries (even).
        ff_dim: hidden width of the transformer's query FFN.
        decoder_dims: channels of the decoder's stride-8 and stride-4 stages.
        full_res_dim: channels of the decoder's full-resolution head.
        backbone_weights: optional LOCAL torchvision-style ResNet state dict for the key encoder (never downloaded).
        value_backbone_weights: optional LOCAL ResNet state dict for the value encoder (its conv1 stays random).
        ops_backend: backend of the frame-rule op (``"auto"``, ``"naive"``, ``"triton"``).
    """

    def __init__(
        self,
        *,
        num_classes: int = 1,
        value_feedback: bool = True,
        update_rule: str = "frame",
        token_gate: str = "head",
        key_encoder: str = "resnet50",
        key_width: int = 64,
        key_depths: tuple[int, int, int] | None = None,
        value_encoder: str = "resnet18",
        value_width: int = 64,
        value_depths: tuple[int, int, int] | None = None,
        pix_dim: int = 256,
        key_dim: int = 64,
        value_dim: int = 256,
        heads: int = 8,
        sensory_dim: int = 256,
        embed_dim: int = 256,
        transformer_blocks: int = 3,
        transformer_heads: int = 8,
        num_queries: int = 16,
        ff_dim: int = 2048,
        decoder_dims: tuple[int, int] = (128, 128),
        full_res_dim: int = 16,
        backbone_weights: str | None = None,
        value_backbone_weights: str | None = None,
        ops_backend: str = "auto",
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.num_classes, self.value_feedback = num_classes, value_feedback
        mask_ch = num_classes if value_feedback else 0
        self.register_buffer("pixel_mean", torch.tensor(0.5), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(0.5), persistent=False)
        self.key_encoder = ResNetTrunk(key_encoder, 1, key_width, key_depths)
        c4, c8, c16 = self.key_encoder.out_dims
        self.pix_proj = nn.Conv2d(c16, pix_dim, 1)
        self.key_proj = KeyProjection(c16, pix_dim, key_dim)
        self.kpff = KPFF(key_dim, pix_dim)
        self.value_encoder = ValueEncoder(value_encoder, mask_ch, value_width, value_depths, pix_dim, value_dim)
        self.memory = LKVAMemory(key_dim, value_dim, heads, update_rule, ops_backend, token_gate)
        self.value_sensory = SensoryUpdater([value_dim], sensory_dim, sensory_dim)
        self.summarizer = ObjectSummarizer(value_dim, embed_dim, num_queries)
        self.readout_fuse = nn.Conv2d(sensory_dim + mask_ch, value_dim, 1)
        self.pixel_fuser = FeatureFuser(pix_dim, value_dim, value_dim)
        self.transformer = ObjectTransformer(
            value_dim, embed_dim, transformer_blocks, transformer_heads, num_queries, ff_dim, num_classes + 1
        )
        self.decoder = MaskDecoder(value_dim, (c8, c4), decoder_dims, full_res_dim, num_classes + 1)
        self.decoder_sensory = (
            SensoryUpdater([value_dim, *decoder_dims, num_classes + 1], sensory_dim, sensory_dim)
            if value_feedback
            else None
        )
        self.sensory_head = nn.Conv2d(pix_dim + sensory_dim, num_classes + 1, 1)
        if backbone_weights is not None:
            load_backbone_weights(self.key_encoder, backbone_weights, average_rgb=True)
        if value_backbone_weights is not None:
            load_backbone_weights(self.value_encoder.trunk, value_backbone_weights, average_rgb=False)

    # ------------------------------------------------------------------ stages
    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        """Args: frames: [..., 1, H, W] float in [0, 1]. Returns: same shape, (x - 0.5) / 0.5."""
        return (frames - self.pixel_mean) / self.pixel_std

    def encode_key(self, image: torch.Tensor) -> KeyFeatures:
        """Key/query encoder, pixel projection, key projection, KPFF and the memory's feature map.

        Args:
            image: [B, 1, H, W] normalised frames.

        Returns:
            ``KeyFeatures`` (k [B, N, Dk], pix, f8, f4).
        """
        f16, f8, f4 = self.key_encoder(image)
        pix = self.pix_proj(f16)
        key = self.kpff(self.key_proj(f16), pix)
        return KeyFeatures(self.memory.phi(key), pix, f8, f4)

    def encode_value(self, image: torch.Tensor, prev_prob: torch.Tensor | None, pix: torch.Tensor) -> torch.Tensor:
        """Value encoder. Args: image [B, 1, H, W]; prev_prob [B, C, H, W] or None; pix [B, pix_dim, h, w].
        Returns: [B, Dv, h, w] values."""
        return self.value_encoder(image, prev_prob if self.value_feedback else None, pix)

    def write(self, k: torch.Tensor, v: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write T frames into the memory and read each after its write (one op call).

        Args:
            k: [B, T, N, Dk] keys; v: [B, T, N, Dv] values; memory: state before the first frame.

        Returns:
            o: [B, T, N, Dv] readouts; memory: state after the last frame.
        """
        return self.memory.write(k, v, memory)

    def read(self, k: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Read the memory without writing. Args: k [B, N, Dk]; memory: a state. Returns: [B, N, Dv]."""
        return self.memory.read(k, memory)

    def decode(
        self,
        readout: torch.Tensor,
        sensory: torch.Tensor,
        summary: torch.Tensor,
        feats: KeyFeatures,
        image: torch.Tensor,
        prev_prob: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Readout -> logits.

        Args:
            readout: [B, Dv, h, w] memory readout of the frame.
            sensory: [B, sensory_dim, h, w] sensory state after the value update.
            summary: [B, Q, E] object summaries (running mean).
            feats: the frame's ``KeyFeatures``.
            image: [B, 1, H, W] normalised frame.
            prev_prob: [B, C, H, W] previous foreground probabilities (value feedback) or None.

        Returns:
            logits [B, C + 1, H, W]; sensory [B, sensory_dim, h, w] (updated by the decoder with value feedback);
            aux: name -> [B, C + 1, h, w] auxiliary logits (``sensory``, ``block0`` ...).
        """
        extra = [sensory]
        if self.value_feedback:
            extra.append(downsample_to(prev_prob.to(sensory.dtype), tuple(sensory.shape[-2:])))
        x = readout + self.readout_fuse(torch.cat(extra, dim=1))
        x = self.pixel_fuser(feats.pix, x)
        x, aux_blocks = self.transformer(x, summary)
        logits, dec_feats = self.decoder(x, feats.f8, feats.f4, image)
        aux = {"sensory": self.sensory_head(torch.cat([feats.pix, sensory.to(feats.pix.dtype)], dim=1))}
        aux.update({f"block{i}": a for i, a in enumerate(aux_blocks)})
        if self.decoder_sensory is not None:
            sensory = self.decoder_sensory(dec_feats, sensory)
        return logits, sensory, aux

    # ------------------------------------------------------------------ streaming
    def init_state(self, batch: int, height: int, width: int, device: torch.device | str | None = None) -> State:
        """Zero streaming state of a batch of clips (all tensors fp32, fixed size for any clip length).

        Args:
            batch: B clips.
            height, width: frame size (multiples of 16).
            device: where to allocate (default: the model's device).

        Returns:
            dict with ``memory`` (frame rule [B, Dk, Dv], token rule [B, H, Dk, Dv/H]), ``sensory``
            [B, sensory_dim, H/16, W/16], ``summary_sum`` [B, Q, E], ``summary_area`` [B, Q, 1] and, with value
            feedback, ``prob`` [B, C, H, W] (previous foreground probabilities).
        """
        _check_size(height, width)
        device = self.pixel_mean.device if device is None else device
        h, w = height // 16, width // 16
        q, e = self.summarizer.num_summaries, self.summarizer.embed_dim
        state = {
            "memory": self.memory.init_state(batch, device),
            "sensory": torch.zeros(batch, self.value_sensory.sensory_dim, h, w, device=device),
            "summary_sum": torch.zeros(batch, q, e, device=device),
            "summary_area": torch.zeros(batch, q, 1, device=device),
        }
        if self.value_feedback:
            state["prob"] = torch.zeros(batch, self.num_classes, height, width, device=device)
        return state

    def step(self, frame: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One streaming frame (functional: returns a new state, never mutates ``state``).

        Args:
            frame: [B, 1, H, W] float in [0, 1].
            state: from ``init_state`` or the previous ``step``.

        Returns:
            logits [B, C + 1, H, W] and the new state.
        """
        image = self.normalize(frame)
        logits, new_state, _ = self._frame(image, self.encode_key(image), state)
        return logits, new_state

    def _frame(self, image: torch.Tensor, feats: KeyFeatures, state: State) -> tuple[torch.Tensor, State, dict]:
        """All stages after the key encoder for one frame (shared by ``step`` and the recurrent clip forward)."""
        prev = state.get("prob")
        value = self.encode_value(image, prev, feats.pix)
        b, dv, h, w = value.shape
        sensory = self.value_sensory([value], state["sensory"])
        fg = None if prev is None else downsample_to(prev.sum(dim=1, keepdim=True), (h, w))
        sums, areas = self.summarizer(value, fg)
        summary_sum, summary_area = state["summary_sum"] + sums, state["summary_area"] + areas
        o, memory = self.memory.step(feats.k, value.flatten(2).transpose(1, 2), state["memory"])
        readout = o.transpose(1, 2).reshape(b, dv, h, w).to(value.dtype)
        summary = summary_sum / (summary_area + 1e-4)
        logits, sensory, aux = self.decode(readout, sensory, summary, feats, image, prev)
        new_state = {"memory": memory, "sensory": sensory.float(), "summary_sum": summary_sum}
        new_state["summary_area"] = summary_area
        if self.value_feedback:
            new_state["prob"] = torch.softmax(logits.float(), dim=1)[:, 1:]
        return logits, new_state, aux

    # ------------------------------------------------------------------ clip forward
    def forward(
        self, frames: torch.Tensor, return_aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Segment whole clips (training path).

        Args:
            frames: [B, T, 1, H, W] float in [0, 1], H and W multiples of 16.
            return_aux: also return the auxiliary logits.

        Returns:
            logits [B, T, C + 1, H, W]; with ``return_aux`` also a dict name -> [B, T, C + 1, H/16, W/16]
            (``sensory``, ``block0`` ... one per transformer block).

        Raises:
            InputError: frames of the wrong rank, channel count or size.
        """
        logits, _, aux = self.forward_clip(frames)
        return (logits, aux) if return_aux else logits

    def forward_clip(
        self, frames: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        """Clip forward from a given streaming state (default: zeros); returns (logits, final state, aux)."""
        _check_frames(frames)
        b, t, _, height, width = frames.shape
        if state is None:
            state = self.init_state(b, height, width, frames.device)
        images = self.normalize(frames).flatten(0, 1)
        feats = self.encode_key(images)
        if self.value_feedback:
            return self._forward_recurrent(images, feats, state, b, t)
        return self._forward_parallel(images, feats, state, b, t)

    def _forward_recurrent(
        self, images: torch.Tensor, feats: KeyFeatures, state: State, b: int, t: int
    ) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        """Value feedback: keys batched over B*T, then the other stages frame by frame (state carries gradients)."""
        images = images.unflatten(0, (b, t))
        per_frame = KeyFeatures(*(x.unflatten(0, (b, t)) for x in feats))
        logits, auxes = [], []
        for i in range(t):
            logit, state, aux = self._frame(images[:, i], KeyFeatures(*(x[:, i] for x in per_frame)), state)
            logits.append(logit)
            auxes.append(aux)
        aux = {name: torch.stack([a[name] for a in auxes], dim=1) for name in auxes[0]}
        return torch.stack(logits, dim=1), state, aux

    def _forward_parallel(
        self, images: torch.Tensor, feats: KeyFeatures, state: State, b: int, t: int
    ) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        """No value feedback: every stage batched over B*T frames, the memory in one op call for the clip."""
        value = self.encode_value(images, None, feats.pix)  # [BT, Dv, h, w]
        _, dv, h, w = value.shape
        sums, areas = self.summarizer(value, None)
        summary_sum = state["summary_sum"][:, None] + sums.unflatten(0, (b, t)).cumsum(dim=1)
        summary_area = state["summary_area"][:, None] + areas.unflatten(0, (b, t)).cumsum(dim=1)
        values = value.unflatten(0, (b, t))
        sensory, sensories = state["sensory"], []
        for i in range(t):
            sensory = self.value_sensory([values[:, i]], sensory)
            sensories.append(sensory)
        v_tokens = value.flatten(2).transpose(1, 2).unflatten(0, (b, t))
        o, memory = self.write(feats.k.unflatten(0, (b, t)), v_tokens, state["memory"])
        readout = o.flatten(0, 1).transpose(1, 2).reshape(b * t, dv, h, w).to(value.dtype)
        summary = (summary_sum / (summary_area + 1e-4)).flatten(0, 1)
        logits, _, aux = self.decode(readout, torch.stack(sensories, dim=1).flatten(0, 1), summary, feats, images, None)
        new_state = {"memory": memory, "sensory": sensory.float(), "summary_sum": summary_sum[:, -1]}
        new_state["summary_area"] = summary_area[:, -1]
        aux = {name: a.unflatten(0, (b, t)) for name, a in aux.items()}
        return logits.unflatten(0, (b, t)), new_state, aux

    # ------------------------------------------------------------------ size
    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (all, or only those with ``requires_grad``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def summary(self) -> str:
        """Parameter count per stage and in total, one line each (also logged at INFO)."""
        counts = [(name, sum(p.numel() for p in child.parameters())) for name, child in self.named_children()]
        lines = [f"{name:<16} {count:>12,d}" for name, count in counts]
        lines.append(f"{'total':<16} {self.num_parameters():>12,d}")
        text = "\n".join(lines)
        logger.info("GDKVM parameters:\n%s", text)
        return text

    def extra_repr(self) -> str:
        return f"params={self.num_parameters() / 1e6:.2f}M, update_rule={self.memory.update_rule!r}"


def _check_size(height: int, width: int) -> None:
    if height % 16 or width % 16 or height < 16 or width < 16:
        raise InputError(f"frame height and width must be positive multiples of 16, got {height}x{width}")


def _check_frames(frames: torch.Tensor) -> None:
    if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[2] != 1:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise InputError(f"frames must be a [B, T, 1, H, W] tensor, got {shape}")
    if not frames.is_floating_point():
        raise InputError(f"frames must be float in [0, 1], got {frames.dtype}")
    _check_size(*frames.shape[-2:])
