"""Throughput of gdkvm.data.io readers and write_video on this machine (CPU).

Run from the repository root: ``.venv/bin/python -m bench.io [--repeats 3]``. Writes test files of typical sizes
into a temporary folder (EchoNet-like 112x112 AVI, CAMUS-like NIfTI half sequence, DICOM cine loops, an overlay mp4)
and prints the median time per file and the frames per second for each format.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import SimpleITK as sitk

from gdkvm.data.io import read_clip, write_video
from gdkvm.viz import overlay
from tests.data.dicom_factory import us_region, write_dicom


def _speckle(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """[T, H, W] uint8 speckle-like frames with a moving dark blob (compresses like echo, not like noise)."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), 1.5) * 255
    rows, cols = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(t):
        r = 0.25 * h * (1 + 0.2 * np.sin(2 * np.pi * i / 25))
        blob = (rows - h / 2) ** 2 + (cols - w / 2) ** 2 < r**2
        frames.append(np.where(blob, base * 0.2, base))
    return np.clip(frames, 0, 255).astype(np.uint8)


def _files(root: Path) -> dict[str, Path]:
    echonet = _speckle(175, 112, 112)
    avi = root / "echonet.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 50, (112, 112))
    for frame in echonet:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    camus = _speckle(20, 584, 497, seed=1)
    image = sitk.GetImageFromArray(camus)
    image.SetSpacing((0.308, 0.154, 1.0))
    sitk.WriteImage(image, str(root / "camus_half_sequence.nii.gz"))
    cine = _speckle(60, 600, 800, seed=2)
    region = [us_region((100, 50, 700, 550), (0.03, 0.03))]
    rgb = np.repeat(cine[..., None], 3, axis=-1)
    write_dicom(root / "cine_jpeg.dcm", rgb, photometric="YBR_FULL_422", syntax="jpeg", frame_time=20, regions=region)
    write_dicom(root / "cine_raw.dcm", cine, frame_time=20, regions=region)
    write_dicom(root / "cine_rle.dcm", cine, syntax="rle", frame_time=20, regions=region)
    write_video(root / "echonet.mp4", echonet, 50)
    return {p.name: p for p in sorted(root.iterdir())}


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = _files(Path(tmp))
        print(f"{'read_clip':<28} {'frames':>14} {'ms/file':>9} {'frames/s':>9}")
        for name, path in files.items():
            clip = read_clip(path)
            seconds = _median_s(lambda p=path: read_clip(p), args.repeats)
            shape = "x".join(map(str, clip.frames.shape))
            print(f"{name:<28} {shape:>14} {seconds * 1e3:9.1f} {len(clip.frames) / seconds:9.0f}")
        frames = read_clip(files["echonet.avi"]).frames
        masks = (frames < 40).astype(np.int64)
        seconds = _median_s(lambda: overlay(frames, masks), args.repeats)
        print(f"overlay 175x112x112: {seconds * 1e3:.1f} ms ({len(frames) / seconds:.0f} frames/s)")
        rgb = overlay(frames, masks)
        seconds = _median_s(lambda: write_video(Path(tmp) / "out.mp4", rgb, 50), args.repeats)
        print(f"write_video 175x112x112 RGB: {seconds * 1e3:.1f} ms ({len(rgb) / seconds:.0f} frames/s)")
        big = np.repeat(_speckle(20, 584, 497)[..., None], 3, axis=-1)
        seconds = _median_s(lambda: write_video(Path(tmp) / "big.mp4", big, 30), args.repeats)
        print(f"write_video 20x584x497 RGB: {seconds * 1e3:.1f} ms ({len(big) / seconds:.0f} frames/s)")


if __name__ == "__main__":
    main()
