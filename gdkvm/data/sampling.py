"""Frame-index sampling, resizing and sample assembly shared by the CAMUS and EchoNet-Dynamic loaders.

Both loaders build a clip the same way: choose frame indices (ED..ES in clip mode, every frame in full mode), resize
the frames (bilinear) and the label masks (nearest) to a square ``size``, scale the pixel spacing accordingly, and
pack everything into the sample dict of the shared contract (see :func:`make_sample`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch

#: Structure names accepted in ``labels=`` and their CAMUS label ids.
LABEL_IDS: dict[str, int] = {"lv": 1, "myo": 2, "la": 3}

#: Sampling modes of the datasets.
MODES: tuple[str, ...] = ("clip", "full")


def check_mode(mode: str) -> str:
    """Validate a dataset ``mode`` argument ("clip" or "full")."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def check_size(size: int) -> int:
    """Validate the output side length in pixels."""
    if int(size) != size or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    return int(size)


def label_lut(labels: Sequence[str]) -> np.ndarray:
    """Lookup table that keeps the chosen CAMUS structures and renumbers them 1..C in the given order.

    Args:
        labels: structure names from :data:`LABEL_IDS`, e.g. ``("lv",)`` or ``("lv", "myo", "la")``.

    Returns:
        lut: [256] uint8; ``lut[camus_id]`` is the new label id (0 for structures not chosen).
    """
    if isinstance(labels, str) or not labels:
        raise ValueError(f"labels must be a non-empty sequence of names from {sorted(LABEL_IDS)}, got {labels!r}")
    lut = np.zeros(256, dtype=np.uint8)
    for new_id, name in enumerate(labels, start=1):
        if name not in LABEL_IDS:
            raise ValueError(f"unknown label {name!r}; choose from {sorted(LABEL_IDS)}")
        if lut[LABEL_IDS[name]]:
            raise ValueError(f"label {name!r} is listed twice in {labels!r}")
        lut[LABEL_IDS[name]] = new_id
    return lut


def relabel(masks: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Apply a :func:`label_lut` table to uint8 masks of any shape (OpenCV's LUT, much faster than indexing)."""
    flat = np.ascontiguousarray(masks, dtype=np.uint8).reshape(-1, masks.shape[-1] if masks.ndim else 1)
    return cv2.LUT(flat, lut).reshape(masks.shape)


def sample_indices(ed: int, es: int, num_frames: int) -> np.ndarray:
    """Indices of ``num_frames`` frames spread uniformly from ED to ES, whichever comes first in time.

    Positions ``first + k * (last - first) / (num_frames - 1)`` are rounded half up, so both key frames are always
    included and, when the span has fewer frames than asked for, frames repeat (in time order).

    Args:
        ed: 0-based ED frame index.
        es: 0-based ES frame index.
        num_frames: number of frames to return (>= 2, or 1 when ED == ES).

    Returns:
        indices: [num_frames] int64, non-decreasing, from ``min(ed, es)`` to ``max(ed, es)``.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    first, last = min(ed, es), max(ed, es)
    if num_frames == 1:
        if first != last:
            raise ValueError("num_frames=1 cannot include both ED and ES; use num_frames >= 2")
        return np.array([first], dtype=np.int64)
    positions = np.linspace(first, last, num_frames)
    return np.floor(positions + 0.5).astype(np.int64)


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize frames to ``size x size`` with bilinear interpolation (area averaging when shrinking a lot).

    Args:
        frames: [T, H, W] uint8 or float32.

    Returns:
        [T, size, size] float32 in [0, 1] (uint8 input is divided by 255; float input is clipped to [0, 1]).
    """
    h, w = frames.shape[1:3]
    if (h, w) == (size, size):
        out = frames.astype(np.float32)
    else:
        out = np.empty((frames.shape[0], size, size), dtype=np.float32)
        interp = cv2.INTER_AREA if (h >= 2 * size and w >= 2 * size) else cv2.INTER_LINEAR
        for t, frame in enumerate(frames):
            src = frame if frame.dtype == np.uint8 else frame.astype(np.float32, copy=False)
            out[t] = cv2.resize(src, (size, size), interpolation=interp)
    if frames.dtype == np.uint8:
        out *= 1.0 / 255.0
    else:
        np.clip(out, 0.0, 1.0, out=out)
    return out


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """Resize label masks to ``size x size`` with nearest-neighbour interpolation.

    Args:
        masks: [T, H, W] integer label ids (< 256).

    Returns:
        [T, size, size] uint8.
    """
    out = np.empty((masks.shape[0], size, size), dtype=np.uint8)
    for t, mask in enumerate(masks):
        m = mask.astype(np.uint8, copy=False)
        out[t] = m if m.shape == (size, size) else cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)
    return out


def resized_spacing(spacing: tuple[float, float] | None, shape: tuple[int, int], size: int) -> np.ndarray:
    """Pixel spacing after resizing an ``H x W`` image to ``size x size``.

    Args:
        spacing: (row, col) mm per pixel of the original image, or None when unknown.
        shape: original (H, W).

    Returns:
        [2] float32 (row, col) mm per output pixel; NaN when unknown.
    """
    if spacing is None:
        return np.full(2, np.nan, dtype=np.float32)
    return np.array([spacing[0] * shape[0] / size, spacing[1] * shape[1] / size], dtype=np.float32)


def _check_meta(meta: Mapping[str, object]) -> None:
    for key, value in meta.items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise TypeError(f"meta[{key!r}] must be str, int or float to stay collatable, got {type(value).__name__}")


def make_sample(
    frames: np.ndarray,
    masks: np.ndarray,
    labelled: np.ndarray,
    spacing: np.ndarray,
    meta: Mapping[str, object],
) -> dict[str, object]:
    """Pack arrays into the sample dict of the shared clip contract.

    Args:
        frames: [T, H, W] float32 in [0, 1].
        masks: [T, H, W] integer label ids (0 background, 1..C chosen structures; zeros on unlabelled frames).
        labelled: [T] bool, True where a ground-truth mask exists.
        spacing: [2] float32 (row, col) mm per pixel of ``frames``; NaN when unknown.
        meta: str/int/float values only (so that the default collate keeps working).

    Returns:
        dict with ``frames`` [T, 1, H, W] float32, ``masks`` [T, H, W] int64, ``labelled`` [T] bool,
        ``spacing`` [2] float32 and ``meta`` (a plain dict).
    """
    _check_meta(meta)
    return {
        "frames": torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).unsqueeze(1),
        "masks": torch.from_numpy(np.ascontiguousarray(masks, dtype=np.int64)),
        "labelled": torch.from_numpy(np.ascontiguousarray(labelled, dtype=bool)),
        "spacing": torch.from_numpy(np.asarray(spacing, dtype=np.float32)),
        "meta": dict(meta),
    }


def nan_if_missing(value: object) -> float:
    """A float, or NaN for None/empty/unparseable values (reference EF and similar optional numbers)."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return out


def key_positions(indices: np.ndarray, ed: int, es: int) -> tuple[int, int]:
    """Positions of the ED and ES frames in a non-decreasing index array.

    When a key frame repeats (short spans), the copy at the outer end of the clip is taken: the first copy of
    whichever key frame comes first in time and the last copy of the other.

    Args:
        indices: [T] non-decreasing source frame indices (from :func:`sample_indices` or ``arange``).
        ed: source index of ED.
        es: source index of ES.

    Returns:
        (ed_position, es_position) into ``indices``.
    """
    ed_hits, es_hits = np.flatnonzero(indices == ed), np.flatnonzero(indices == es)
    if ed_hits.size == 0 or es_hits.size == 0:
        raise ValueError(f"ED {ed} or ES {es} is not among the sampled indices {indices.tolist()}")
    if ed <= es:
        return int(ed_hits[0]), int(es_hits[-1])
    return int(ed_hits[-1]), int(es_hits[0])
