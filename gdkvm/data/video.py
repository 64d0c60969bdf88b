"""Video files: read .avi/.mp4 (any codec FFmpeg decodes) as grayscale frames, write browser-playable H.264 mp4.

Both go through PyAV (FFmpeg bindings shipped in the wheel), so no system FFmpeg is needed. Reading converts colour
to gray with FFmpeg's own BT.601 luma conversion; echo videos such as EchoNet-Dynamic's MJPG AVIs are stored as
three identical channels. Writing encodes H.264 (libx264) in yuv420p with even frame sizes and ``+faststart``, the
combination Chrome, Firefox and Safari play in a ``<video>`` tag, and writes to a temporary name in the target folder
that is renamed only once the file is complete, so a crash never leaves a partial file at the target.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from gdkvm.errors import InputError

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".avi", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".mpg", ".mpeg")
# H.264 encoders in order of preference; PyAV's wheels ship libx264.
_H264_ENCODERS = ("libx264", "libopenh264", "h264")


def read_video(path: str | Path) -> tuple[np.ndarray, float | None]:
    """Decode every frame of a video file to grayscale.

    Args:
        path: an .avi, .mp4 or other container with one video stream.

    Returns:
        ``(frames, fps)``: frames ``[T, H, W]`` uint8, and the stream's average frame rate in frames per second
        (``None`` when the container does not tell).

    Raises:
        InputError: the file cannot be opened, has no video stream, decodes to zero frames, or is truncated
            (fewer frames decode than its header declares) or corrupt.
    """
    path = Path(path)
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise InputError(f"not a readable video file, corrupt or truncated ({err.strerror or err})", path) from None
    with container:
        if not container.streams.video:
            raise InputError("contains no video stream", path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = int(stream.frames or 0)
        frames: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="gray"))
        except av.FFmpegError as err:
            raise InputError(
                f"corrupt or truncated video: decoding failed after {len(frames)} frame(s) ({err.strerror or err})",
                path,
            ) from None
        fps = _stream_fps(stream)
    if not frames:
        raise InputError("video has zero frames", path)
    if declared and len(frames) < declared:
        raise InputError(f"truncated video: the header declares {declared} frames but only {len(frames)} decode", path)
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise InputError(f"frame size changes inside the video ({sorted(shapes)})", path)
    logger.debug("read %s: %d frames of %s at %s fps", path, len(frames), frames[0].shape, fps)
    return np.stack(frames), fps


def _stream_fps(stream: av.video.stream.VideoStream) -> float | None:
    """Frames per second of a stream: its average rate, else FFmpeg's guess, else None."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return None


def _h264_encoder() -> str:
    for name in _H264_ENCODERS:
        if name in av.codecs_available:
            try:
                av.codec.Codec(name, "w")
            except (av.FFmpegError, ValueError):
                continue
            return name
    raise InputError("this PyAV build has no H.264 encoder (libx264/libopenh264); reinstall the 'av' wheel")


def _as_rgb_even(frames: np.ndarray, path: Path) -> np.ndarray:
    """Check and convert frames for the encoder.

    Args:
        frames: ``[T, H, W]`` or ``[T, H, W, 3]`` uint8.
        path: the target file, named in errors.

    Returns:
        ``[T, H', W', 3]`` uint8, C-contiguous, with H' and W' even (odd sizes padded by one replicated row/column).
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise InputError(f"write_video needs uint8 frames, got {frames.dtype}", path)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"write_video needs frames [T, H, W] or [T, H, W, 3], got shape {list(frames.shape)}", path)
    t, h, w, _ = frames.shape
    if t == 0 or h < 2 or w < 2:
        raise InputError(f"write_video needs at least one frame of at least 2x2 pixels, got {list(frames.shape)}", path)
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(frames)


def write_video(path: str | Path, frames: np.ndarray, fps: float, *, crf: int = 20) -> Path:
    """Write frames as an H.264 mp4 that browsers play (yuv420p, even size, moov atom first).

    The file is written to a temporary name in the same folder and renamed onto ``path`` only when complete; an
    existing file at ``path`` is replaced (the caller decides whether that is allowed).

    Args:
        path: the target ``.mp4`` file; its folder is created if missing.
        frames: ``[T, H, W]`` (gray) or ``[T, H, W, 3]`` (RGB) uint8. Odd heights/widths are padded by one
            replicated row/column because yuv420p needs even sizes.
        fps: frames per second, > 0 (non-integer rates such as 50.9 are kept as a fraction).
        crf: libx264 constant rate factor (lower is better quality; 18-23 is visually near-lossless for echo).

    Returns:
        The path written.

    Raises:
        InputError: frames of the wrong dtype/shape, a bad fps, or no H.264 encoder in the PyAV build.
    """
    path = Path(path)
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise InputError(f"write_video needs a positive finite fps, got {fps!r}", path)
    rgb = _as_rgb_even(frames, path)
    encoder = _h264_encoder()
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique hidden name in the target folder (same file system, so the rename is atomic); FFmpeg creates it with
    # the usual umask permissions, unlike tempfile.mkstemp's 0600
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.part"
    try:
        _encode(tmp, rgb, Fraction(fps).limit_denominator(1001), encoder, crf)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("wrote %s: %d frames %dx%d at %.3g fps (%s)", path, len(rgb), rgb.shape[2], rgb.shape[1], fps, encoder)
    return path


def _encode(target: Path, rgb: np.ndarray, rate: Fraction, encoder: str, crf: int) -> None:
    """Encode ``rgb`` ``[T, H, W, 3]`` uint8 (even H, W) into an mp4 at ``target``."""
    with av.open(str(target), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(encoder, rate=rate)
        stream.width = rgb.shape[2]
        stream.height = rgb.shape[1]
        stream.pix_fmt = "yuv420p"
        if encoder == "libx264":
            stream.options = {"crf": str(crf), "preset": "medium", "profile": "high"}
        for i, image in enumerate(rgb):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
