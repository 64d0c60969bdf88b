"""Streaming inference: ``VideoSegmenter`` runs a GDKVM frame by frame with a fixed-size state.

The segmenter holds the model's streaming state (memory matrix, sensory map, running object summaries, previous
prediction) between ``step`` calls, so a clip of any length runs in constant memory. ``segment`` runs a whole clip
(or a batch of clips) and returns the per-frame class probabilities; it equals the model's clip forward.

GPU speed: ``step`` has static shapes and no host synchronisation, so with ``compile=True`` it is wrapped in
``torch.compile(mode="reduce-overhead")`` (CUDA graphs); ``amp=True`` runs it under bf16 autocast.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch

from gdkvm.errors import InputError
from gdkvm.model.gdkvm import GDKVM, State

logger = logging.getLogger(__name__)

ArrayLike = torch.Tensor | np.ndarray


class VideoSegmenter:
    """Frame-by-frame segmentation of echo clips with a GDKVM.

    Args:
        model: a ``GDKVM`` (put into eval mode; its weights are not changed).
        device: where to run (default: the model's device).
        amp: run under autocast (bf16 by default; only on CUDA is it useful).
        amp_dtype: autocast dtype.
        compile: wrap the model's ``step`` in ``torch.compile(mode="reduce-overhead")`` (CUDA graphs on GPU).
    """

    def __init__(
        self,
        model: GDKVM,
        device: str | torch.device | None = None,
        amp: bool = False,
        amp_dtype: torch.dtype = torch.bfloat16,
        compile: bool = False,
    ) -> None:
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.amp, self.amp_dtype, self.compiled = amp, amp_dtype, compile
        # dynamic=False: one static graph per frame size and batch (a second size used to trigger a dynamic-shape
        # recompile that Inductor failed to lower for the full network on torch 2.11)
        self._step = torch.compile(model.step, mode="reduce-overhead", dynamic=False) if compile else model.step
        self._state: State | None = None
        self._shape: tuple[int, int, int] | None = None

    @property
    def state(self) -> State | None:
        """The current streaming state (None before the first frame / after ``reset``)."""
        return self._state

    def reset(self) -> None:
        """Forget the current clip; the next ``step`` starts a new one."""
        self._state, self._shape = None, None

    @torch.no_grad()
    def step(self, frame: ArrayLike) -> torch.Tensor:
        """Segment the next frame of the current clip(s).

        Args:
            frame: one frame [H, W] or [1, H, W], or one frame of each of B clips [B, 1, H, W]; uint8 (0..255) or
                float in [0, 1]; numpy or torch.

        Returns:
            probabilities [C + 1, H, W] (single clip) or [B, C + 1, H, W], float32 on the segmenter's device.

        Raises:
            InputError: bad rank, dtype, value range or size, or a size change without ``reset``.
        """
        x, single = self._frame_tensor(frame)
        b, _, h, w = x.shape
        if self._state is None:
            self._state = self.model.init_state(b, h, w, self.device)
            self._shape = (b, h, w)
        elif self._shape != (b, h, w):
            raise InputError(f"frame batch/size changed from {self._shape} to {(b, h, w)}; call reset() first")
        if self.compiled:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            logits, state = self._step(x, self._state)
        prob = torch.softmax(logits.float(), dim=1)
        if self.compiled:  # CUDA-graph outputs are overwritten by the next replay: keep our own copy of the state
            state = {k: v.clone() for k, v in state.items()}
        self._state = state
        return prob[0] if single else prob

    def iter_segment(self, frames: ArrayLike) -> Iterator[torch.Tensor]:
        """Segment a clip (or batch of clips) from its first frame, yielding each frame's probabilities.

        Args:
            frames: [T, H, W] or [T, 1, H, W] (one clip) or [B, T, 1, H, W] (B clips); uint8 or float in [0, 1].

        Yields:
            [C + 1, H, W] (one clip) or [B, C + 1, H, W] probabilities per frame.
        """
        clip, single = self._clip_tensor(frames)
        self.reset()
        for t in range(clip.shape[1]):
            prob = self.step(clip[:, t])
            yield prob[0] if single else prob

    def segment(self, frames: ArrayLike) -> torch.Tensor:
        """Segment a whole clip (or batch of clips).

        Args:
            frames: [T, H, W] or [T, 1, H, W] (one clip) or [B, T, 1, H, W] (B clips); uint8 or float in [0, 1].

        Returns:
            [T, C + 1, H, W] or [B, T, C + 1, H, W] float32 probabilities (channel 0 background).
        """
        probs = list(self.iter_segment(frames))
        return torch.stack(probs, dim=0 if _rank(frames) < 5 else 1)

    # ------------------------------------------------------------------ input conversion
    def _to_float(self, x: ArrayLike, what: str) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            if x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating):
                x = torch.from_numpy(np.ascontiguousarray(x))
            else:
                raise InputError(f"{what} must be uint8 or float, got numpy {x.dtype}")
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{what} must be a numpy array or torch tensor, got {type(x).__name__}")
        if x.dtype == torch.uint8:
            return x.to(self.device).float() / 255.0
        if not x.is_floating_point():
            raise InputError(f"{what} must be uint8 or float in [0, 1], got {x.dtype}")
        if x.device.type == "cpu" and x.numel() and (float(x.min()) < -1e-3 or float(x.max()) > 1.0 + 1e-3):
            raise InputError(f"float {what} must lie in [0, 1] (got {float(x.min()):.3g}..{float(x.max()):.3g})")
        return x.to(self.device, torch.float32)

    def _frame_tensor(self, frame: ArrayLike) -> tuple[torch.Tensor, bool]:
        x = self._to_float(frame, "frame")
        if x.ndim == 2:
            return x[None, None], True
        if x.ndim == 3 and x.shape[0] == 1:
            return x[None], True
        if x.ndim == 4 and x.shape[1] == 1:
            return x, False
        raise InputError(f"frame must be [H, W], [1, H, W] or [B, 1, H, W] grayscale, got shape {tuple(x.shape)}")

    def _clip_tensor(self, frames: ArrayLike) -> tuple[torch.Tensor, bool]:
        x = self._to_float(frames, "frames")
        if x.ndim >= 3 and x.shape[-3 if x.ndim == 3 else -4] == 0:
            raise InputError(f"the clip has no frames (shape {tuple(x.shape)})")
        if x.ndim == 3:
            return x[None, :, None], True
        if x.ndim == 4 and x.shape[1] == 1:
            return x[None], True
        if x.ndim == 5 and x.shape[2] == 1:
            return x, False
        raise InputError(
            f"frames must be [T, H, W], [T, 1, H, W] or [B, T, 1, H, W] grayscale, got shape {tuple(x.shape)}"
        )


def _rank(x: object) -> int:
    return len(getattr(x, "shape", ()))
