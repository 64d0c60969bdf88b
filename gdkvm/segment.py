"""Segment whole clips with a streaming model and write what a user keeps: masks, overlay video, area curve.

Shared by ``gdkvm segment``, ``gdkvm ef`` and the browser demo, so the three give the same masks for the same clip.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import SimpleITK as sitk
import torch

from gdkvm.data.io import Clip, read_clip
from gdkvm.data.sampling import resize_frames
from gdkvm.data.video import write_video
from gdkvm.ef.geometry import Structure, lv_areas
from gdkvm.errors import InputError
from gdkvm.viz import overlay

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0
"""Frame rate of the overlay video when the file does not say (EF needs a real one: ``gdkvm ef --fps``)."""

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Segmentation:
    """One segmented clip, at the clip's own resolution.

    Attributes:
        clip: the clip as read (frames [T, H, W], fps, spacing (row, col) mm, path).
        labels: [T, H, W] uint8 label ids (0 background, 1 LV cavity, 2 myocardium, 3 LA when the model has them).
        lv_prob: [T, H, W] float32 LV probability (for confidence displays).
    """

    clip: Clip
    labels: np.ndarray
    lv_prob: np.ndarray

    @property
    def lv_area(self) -> np.ndarray:
        """[T] LV area per frame, mm^2 when the spacing is known, else pixels."""
        return lv_areas(self.labels, label=Structure.LV, spacing=self.clip.spacing)

    @property
    def area_unit(self) -> str:
        return "mm^2" if self.clip.spacing is not None else "px^2"


def model_input_size(model: torch.nn.Module, default: int = 256) -> int:
    """The square input size a model was trained at (``model.input_size`` when the checkpoint recorded it)."""
    size = getattr(model, "input_size", None)
    return int(size) if size else default


def segment_frames(
    frames: np.ndarray,
    segmenter: object,
    *,
    size: int,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment frames one by one with constant memory (the streaming path), back at the frames' resolution.

    Args:
        frames: [T, H, W] uint8 or float32 in [0, 1].
        segmenter: a ``gdkvm.inference.VideoSegmenter`` (``reset()``, ``step(frame [1, 1, S, S]) -> [1, C+1, S, S]``).
        size: the model's square input size S (a multiple of 16).
        progress: called as ``progress(done, total)`` after each frame.

    Returns:
        labels [T, H, W] uint8 and LV probability [T, H, W] float32.
    """
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise InputError(f"expected frames [T, H, W] with T >= 1, got {list(frames.shape)}")
    t_total, h, w = frames.shape
    labels = np.empty((t_total, h, w), dtype=np.uint8)
    lv_prob = np.empty((t_total, h, w), dtype=np.float32)
    segmenter.reset()
    for t in range(t_total):
        small = torch.from_numpy(resize_frames(frames[t : t + 1], size))[:, None]  # [1, 1, S, S]
        prob = segmenter.step(small)  # [1, C+1, S, S]
        prob = prob.float()[0].cpu().numpy().transpose(1, 2, 0)  # [S, S, C+1]
        full = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        full = full.reshape(h, w, -1)
        labels[t] = full.argmax(-1).astype(np.uint8)
        lv_prob[t] = full[..., 1]
        if progress is not None:
            progress(t + 1, t_total)
    return labels, lv_prob


def segment_clip(path: str | Path, segmenter: object, *, size: int, progress: ProgressFn | None = None) -> Segmentation:
    """Read a clip (avi, mp4, nii.gz, mhd, DICOM) and segment every frame; see :func:`segment_frames`."""
    clip = read_clip(path)
    labels, lv_prob = segment_frames(clip.frames, segmenter, size=size, progress=progress)
    return Segmentation(clip=clip, labels=labels, lv_prob=lv_prob)


def clip_stem(path: str | Path) -> str:
    """The file name without its (possibly double, ``.nii.gz``) extension."""
    name = Path(path).name
    for ext in (".nii.gz", ".mhd", ".nii", ".avi", ".mp4", ".dcm"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def write_masks(path: str | Path, labels: np.ndarray, spacing: tuple[float, float] | None) -> Path:
    """Write [T, H, W] label masks as NIfTI (or MetaImage by extension) with the pixel spacing in the header."""
    path = Path(path)
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels.astype(np.uint8)))
    if spacing is not None:
        image.SetSpacing((float(spacing[1]), float(spacing[0]), 1.0))  # SimpleITK order: x (col), y (row), t
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def write_areas(path: str | Path, seg: Segmentation) -> Path:
    """Write ``areas.csv``: frame, time (s, when fps is known) and the LV area in pixels and mm^2."""
    path = Path(path)
    px = lv_areas(seg.labels, label=Structure.LV, spacing=None)
    mm = lv_areas(seg.labels, label=Structure.LV, spacing=seg.clip.spacing) if seg.clip.spacing else None
    fps = seg.clip.fps
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["frame", "time_s", "lv_area_px", "lv_area_mm2"])
        for t in range(len(px)):
            time_s = f"{t / fps:.4f}" if fps else ""
            writer.writerow([t, time_s, f"{px[t]:.0f}", f"{mm[t]:.2f}" if mm is not None else ""])
    return path


def write_segmentation(seg: Segmentation, out_dir: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
    """Write the masks (``<stem>_masks.nii.gz``), the overlay video (``<stem>_overlay.mp4``, H.264) and
    ``<stem>_areas.csv`` into ``out_dir``.

    Raises:
        InputError: when one of those files exists already and ``overwrite`` is False.
    """
    out_dir = Path(out_dir)
    stem = clip_stem(seg.clip.path)
    paths = {
        "masks": out_dir / f"{stem}_masks.nii.gz",
        "overlay": out_dir / f"{stem}_overlay.mp4",
        "areas": out_dir / f"{stem}_areas.csv",
    }
    existing = [p for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise InputError("output exists already (pass --overwrite to replace it)", existing[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    write_masks(paths["masks"], seg.labels, seg.clip.spacing)
    write_video(paths["overlay"], overlay(seg.clip.frames, seg.labels), seg.clip.fps or DEFAULT_FPS)
    write_areas(paths["areas"], seg)
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
