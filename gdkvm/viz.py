"""Overlays of label masks on echo frames, shared by the ``segment`` CLI and the browser demo.

Pure NumPy; the result goes straight into :func:`gdkvm.data.io.write_video`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gdkvm.errors import InputError

__all__ = ["DEFAULT_COLOURS", "overlay", "label_contours"]

# CAMUS label ids: 1 LV cavity, 2 myocardium, 3 left atrium (RGB)
DEFAULT_COLOURS: dict[int, tuple[int, int, int]] = {
    1: (230, 50, 50),
    2: (60, 200, 90),
    3: (70, 130, 240),
    4: (240, 200, 40),
    5: (200, 80, 220),
    6: (40, 210, 220),
}


def label_contours(masks: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Boundary pixels of each labelled region.

    A pixel is on the boundary when it is labelled (non-zero) and one of its 4-neighbours, or the image edge, has a
    different label; ``thickness`` > 1 grows the boundary inwards by that many pixels.

    Args:
        masks: ``[..., H, W]`` integer label ids (0 background).
        thickness: boundary width in pixels, >= 1.

    Returns:
        ``[..., H, W]`` bool, True on region boundaries.
    """
    if thickness < 1:
        raise InputError(f"contour thickness must be >= 1, got {thickness}")
    masks = np.asarray(masks)
    padded = np.pad(masks, [(0, 0)] * (masks.ndim - 2) + [(1, 1), (1, 1)], mode="constant", constant_values=-1)
    inner = np.ones(masks.shape, dtype=bool)  # pixels whose whole neighbourhood shares their label
    for _ in range(thickness):
        centre = padded[..., 1:-1, 1:-1]
        same = (
            (padded[..., :-2, 1:-1] == centre)
            & (padded[..., 2:, 1:-1] == centre)
            & (padded[..., 1:-1, :-2] == centre)
            & (padded[..., 1:-1, 2:] == centre)
        )
        inner &= same
        # erode: pixels that are not inner get a sentinel label, so the next pass peels one more ring
        padded = padded.copy()
        padded[..., 1:-1, 1:-1] = np.where(inner, centre, -2)
    return (masks != 0) & ~inner


def _as_rgb(frames: np.ndarray) -> np.ndarray:
    """``[T, H, W]`` or ``[T, H, W, 3]`` uint8 (or float in [0, 1]) -> ``[T, H, W, 3]`` float32 in 0..255."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        out = frames.astype(np.float32)
    elif frames.dtype.kind == "f":
        out = np.clip(frames.astype(np.float32), 0.0, 1.0) * 255.0
    else:
        raise InputError(f"overlay needs uint8 frames (or float in [0, 1]), got {frames.dtype}")
    if out.ndim == 3:
        out = np.repeat(out[..., None], 3, axis=-1)
    if out.ndim != 4 or out.shape[-1] != 3:
        raise InputError(f"overlay needs frames [T, H, W] or [T, H, W, 3], got shape {list(frames.shape)}")
    return out


def overlay(
    frames: np.ndarray,
    masks: np.ndarray,
    *,
    alpha: float = 0.35,
    colours: Mapping[int, tuple[int, int, int]] | None = None,
    mode: str = "both",
    thickness: int = 1,
) -> np.ndarray:
    """Draw label masks over frames.

    Args:
        frames: ``[T, H, W]`` or ``[T, H, W, 3]`` uint8 (float in [0, 1] is accepted too).
        masks: ``[T, H, W]`` integer label ids, 0 = background (left untouched).
        alpha: opacity of the filled labels, in [0, 1].
        colours: label id -> RGB; defaults to :data:`DEFAULT_COLOURS`. Labels without a colour are not drawn.
        mode: "fill" (translucent regions), "contour" (opaque outlines) or "both".
        thickness: contour width in pixels.

    Returns:
        ``[T, H, W, 3]`` uint8 RGB.

    Raises:
        InputError: shapes that do not match, a bad mode or alpha.
    """
    if mode not in ("fill", "contour", "both"):
        raise InputError(f"overlay mode must be 'fill', 'contour' or 'both', got {mode!r}")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"overlay alpha must be in [0, 1], got {alpha}")
    rgb = _as_rgb(frames)
    masks = np.asarray(masks)
    if masks.shape != rgb.shape[:3]:
        raise InputError(f"masks {list(masks.shape)} do not match frames {list(rgb.shape[:3])} (need [T, H, W])")
    if masks.dtype.kind not in "uib":
        raise InputError(f"masks must hold integer label ids, got {masks.dtype}")
    colours = DEFAULT_COLOURS if colours is None else colours
    edges = label_contours(masks, thickness) if mode != "fill" else None
    for label, colour in colours.items():
        if label == 0:
            continue
        region = masks == label
        if not region.any():
            continue
        paint = np.asarray(colour, dtype=np.float32)
        if mode != "contour":
            rgb[region] = (1.0 - alpha) * rgb[region] + alpha * paint
        if edges is not None:
            rgb[region & edges] = paint
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
