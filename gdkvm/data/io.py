"""One reader for every clip format a user may bring, and the video writer.

``read_clip(path)`` dispatches on the file:

- .avi .mp4 (.mov .mkv ...): PyAV, colour -> gray, uint8 frames; fps from the container; spacing None.
- .nii .nii.gz .mhd .mha .nrrd: SimpleITK; uint8 frames (float32 in [0, 1] for other data); spacing from the header;
  fps from the CAMUS 2023 ``Info_<view>.cfg`` FrameRate when the file sits beside one, else None.
- DICOM (.dcm, or any name with the DICM preamble): pydicom (see :mod:`gdkvm.data.dicom`); fps from FrameTime /
  CineRate / RecommendedDisplayFrameRate; spacing from the ultrasound regions or PixelSpacing.

Axis order for SimpleITK images: ``GetArrayFromImage`` gives ``[T, H, W]`` (z, y, x) while ``GetSpacing`` gives
``(x, y, z)``, so the (row, col) spacing is ``(spacing[1], spacing[0])``. A 2D image is one frame (T = 1).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pydicom
import SimpleITK as sitk

from gdkvm.data.dicom import DICOM_SUFFIXES, is_dicom_file, read_dicom
from gdkvm.data.video import VIDEO_SUFFIXES, read_video, write_video
from gdkvm.errors import InputError

__all__ = [
    "Clip", "clip_extent", "read_clip", "read_image_spacing", "read_volume_spacing", "write_video", "SUPPORTED_SUFFIXES"
]  # fmt: skip

logger = logging.getLogger(__name__)

ITK_SUFFIXES = (".nii", ".nii.gz", ".mhd", ".mha", ".nrrd", ".nhdr")
SUPPORTED_SUFFIXES = VIDEO_SUFFIXES + ITK_SUFFIXES + DICOM_SUFFIXES
_CAMUS_NAME = re.compile(r"^(patient\d+)_(2CH|4CH)_")


@dataclass(frozen=True)
class Clip:
    """A clip as read from disk.

    Attributes:
        frames: ``[T, H, W]`` uint8 (0..255), or float32 in [0, 1] for sources deeper than 8 bits.
        fps: frames per second, or None when the file does not say.
        spacing: ``(row, col)`` pixel size in mm, or None when unknown.
        path: the file read.
    """

    frames: np.ndarray
    fps: float | None
    spacing: tuple[float, float] | None
    path: Path


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def read_clip(path: str | Path) -> Clip:
    """Read a video, NIfTI/MetaImage sequence or DICOM cine loop as grayscale frames.

    Args:
        path: the file. DICOM files are recognised by their suffix or, whatever the name, by the DICM preamble.

    Returns:
        A :class:`Clip` with frames ``[T, H, W]`` (T >= 1), fps and (row, col) spacing in mm where known.

    Raises:
        InputError: missing file, unknown format, corrupt or truncated data, zero frames, no pixel data, or an image
            of the wrong dimensionality; the message names the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path)
    if not path.is_file():
        raise InputError("is not a file", path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", path)
    suffix = _suffix(path)
    if suffix in VIDEO_SUFFIXES:
        frames, fps = read_video(path)
        spacing = None
    elif suffix in ITK_SUFFIXES:
        frames, spacing = _read_itk(path)
        fps = _camus_frame_rate(path)
    elif suffix in DICOM_SUFFIXES or is_dicom_file(path):
        frames, fps, spacing = read_dicom(path)
    else:
        raise InputError(
            f"unknown file type {suffix or '(no extension)'!r}; expected a video (.avi, .mp4), NIfTI (.nii, .nii.gz), "
            "MetaImage (.mhd) or DICOM file",
            path,
        )
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise InputError(f"clip has no pixels (shape {list(frames.shape)})", path)
    logger.debug("read %s: frames %s %s, fps %s, spacing %s", path, frames.shape, frames.dtype, fps, spacing)
    return Clip(frames=frames, fps=fps, spacing=spacing, path=path)


def clip_extent(path: str | Path) -> tuple[int, int, int] | None:
    """``(frames, height, width)`` from the file's header, without decoding pixels; None when the header does not
    tell or cannot be read (the reader's own checks then apply)."""
    name = Path(path).name.lower()
    try:
        if name.endswith(VIDEO_SUFFIXES):
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                rate = float(stream.average_rate or 0)
                frames = int(stream.frames or 0) or int((container.duration or 0) / av.time_base * rate)
                return frames, stream.codec_context.height, stream.codec_context.width
        if name.endswith(ITK_SUFFIXES):
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            size = reader.GetSize()  # (x, y, t, ...)
            return int(np.prod(size[2:], dtype=np.int64)) if len(size) > 2 else 1, size[1], size[0]
        if name.endswith(DICOM_SUFFIXES) or is_dicom_file(path):
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
            return int(ds.get("NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns)
    except Exception:  # unreadable header: read_clip names the problem
        return None
    return None


def _read_itk_image(path: Path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = next((line for line in first if "ERROR" in line or "rror" in line), first[-1] if first else "")
        raise InputError(f"cannot read the image (corrupt or truncated?): {detail.strip()[:200]}", path) from None


def _read_itk(path: Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Read a NIfTI/MetaImage file.

    Returns:
        ``(frames, spacing)``: frames ``[T, H, W]`` uint8 or float32 in [0, 1]; spacing ``(row, col)`` mm.
    """
    image = _read_itk_image(path)
    arr = sitk.GetArrayFromImage(image)  # (z, y, x) [+ components]
    components = image.GetNumberOfComponentsPerPixel()
    if components in (3, 4):
        arr = _luma(arr[..., :3])
    elif components != 1:
        raise InputError(f"images with {components} components per pixel are not supported", path)
    # drop singleton axes beyond (H, W), e.g. a 4D (x, y, 1, t) NIfTI
    while arr.ndim > 3 and 1 in arr.shape[:-2]:
        arr = np.squeeze(arr, axis=arr.shape[:-2].index(1))
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(
            f"expected a 2D image or a 2D+time sequence [T, H, W], got a {image.GetDimension()}D image of size "
            f"{list(image.GetSize())} (x, y, ...)",
            path,
        )
    sx, sy = image.GetSpacing()[:2]
    spacing = (float(sy), float(sx)) if sx > 0 and sy > 0 else None
    return _to_unit_or_uint8(arr), spacing


def _luma(rgb: np.ndarray) -> np.ndarray:
    gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8) if rgb.dtype == np.uint8 else gray


def _to_unit_or_uint8(arr: np.ndarray) -> np.ndarray:
    """``[T, H, W]`` any dtype -> uint8 for integers in 0..255, else float32 in [0, 1] (min-max scaled)."""
    if arr.dtype == np.uint8:
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    if arr.dtype.kind in "uib" and lo >= 0 and hi <= 255:
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        return arr.astype(np.float32)
    arr = arr.astype(np.float32)
    return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)


def read_image_spacing(path: str | Path) -> tuple[float, float] | None:
    """Pixel spacing ``(row, col)`` in mm from a NIfTI/MetaImage header or a DICOM file, without reading pixels.

    Args:
        path: a file ``read_clip`` understands; videos carry no spacing (None).

    Raises:
        InputError: the file is missing or its header cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path)
    suffix = _suffix(path)
    if suffix in VIDEO_SUFFIXES:
        return None
    if suffix in ITK_SUFFIXES:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            raise InputError("cannot read the image header", path) from None
        sx, sy = reader.GetSpacing()[:2]
        return (float(sy), float(sx)) if sx > 0 and sy > 0 else None
    if suffix not in DICOM_SUFFIXES and not is_dicom_file(path):
        raise InputError(f"unknown file type {suffix or '(no extension)'!r}", path)
    import pydicom

    from gdkvm.data.dicom import dicom_spacing

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=suffix in DICOM_SUFFIXES)
    except Exception as err:
        raise InputError(f"cannot read the DICOM header ({type(err).__name__}: {err})", path) from None
    return dicom_spacing(ds, path)


read_volume_spacing = read_image_spacing  # the name the issue uses


def _camus_frame_rate(path: Path) -> float | None:
    """FrameRate from the CAMUS 2023 ``Info_<view>.cfg`` next to ``patientNNNN_<view>_*.nii.gz``, if any."""
    match = _CAMUS_NAME.match(path.name)
    if match is None:
        return None
    cfg = path.parent / f"Info_{match.group(2)}.cfg"
    if not cfg.is_file():
        return None
    try:
        for line in cfg.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "FrameRate":
                rate = float(value)
                return rate if math.isfinite(rate) and rate > 0 else None
    except (OSError, ValueError):
        logger.warning("%s: unreadable FrameRate; fps unknown", cfg)
    return None
