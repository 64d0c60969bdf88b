"""Write a synthetic EchoNet-Dynamic data set: ``Videos/*.avi``, ``FileList.csv``, ``VolumeTracings.csv``.

Videos are apical 4CH, 112 x 112, rendered at 224 x 224 and downsampled with cubic interpolation, stored as 3-channel
MJPG AVI (as EchoNet's own writer does), at 45-57 fps (integer), several beats, varying length. ``FileList.csv`` has
exactly ``FileName, EF, ESV, EDV, FrameHeight, FrameWidth, FPS, NumberOfFrames, Split`` (FileName without ``.avi``,
EF/ESV/EDV the true values of the 3D shape, Split TRAIN/VAL/TEST). ``VolumeTracings.csv`` has exactly
``FileName, X1, Y1, X2, Y2, Frame`` (FileName with ``.avi``, x = column, y = row on the 112 x 112 frame, Frame
0-based): for one ED and one ES frame of one beat, 21 rows each, the long axis (apex -> mitral base midpoint) first,
then 20 chords perpendicular to it at the centres of 20 equal slabs from the apex to the base. Rows are sorted by
frame, and ES usually comes first (ES of a beat, then the next ED), as in the real file; with probability
``ed_first_fraction`` the traced ED precedes the ES. Quirks of the real set can be injected: ``untraced`` videos have
no rows, ``malformed`` videos have one traced frame with 20 rows instead of 21. ``truth.csv`` (not in the real
format) lists the true volumes, every ED/ES frame, the traced frames and which quirk each video got.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from gdkvm.data.synthetic.clip import QUALITIES, Cycle, random_cycle, random_scan
from gdkvm.data.synthetic.files import fmt, prepare_output, split_of, write_csv
from gdkvm.data.synthetic.geometry import HeartShape, random_heart, volume_fraction
from gdkvm.data.synthetic.render import Scan, render_view
from gdkvm.errors import InputError

logger = logging.getLogger(__name__)

SIZE = 112
RENDER = 2  # render at RENDER * SIZE, then downsample
FILELIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split")
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
TRUTH_COLUMNS = (
    "FileName", "Split", "EDV", "ESV", "EF", "HeartRate", "FPS", "NumberOfFrames", "ed_frames", "es_frames",
    "traced_ed_frame", "traced_es_frame", "traced_ed_volume_ml", "traced_es_volume_ml", "lv_area_ed_px",
    "lv_area_es_px", "spacing_mm", "quality", "tracing",
)  # fmt: skip


def chords(heart: HeartShape, scan: Scan, fraction: float, n: int = 20) -> np.ndarray:
    """The EchoNet-style tracing of the LV cavity in the view ``scan`` at volume fraction ``fraction``.

    Args:
        heart: the 3D heart.
        scan: the (RENDER x) scan of the view.
        fraction: LV volume / EDV at the traced frame.
        n: number of chords.

    Returns:
        [n + 1, 4] float64 rows ``(X1, Y1, X2, Y2)`` in pixels of the SIZE x SIZE frame: row 0 the long axis from the
        apex to the middle of the mitral base, rows 1..n chords (one end each side) from the apex to the base.
    """
    sec = heart.section(scan.theta, fraction)
    z = sec.base * (np.arange(n) + 0.5) / n
    half = sec.lv_half_width(z)
    u = np.concatenate([[0.0], -half, [0.0], half])
    zz = np.concatenate([[0.0], z, [sec.base], z])
    cols, rows = scan.to_pixels(u, zz)
    cols, rows = (cols + 0.5) / RENDER - 0.5, (rows + 0.5) / RENDER - 0.5
    return np.stack([cols[: n + 1], rows[: n + 1], cols[n + 1 :], rows[n + 1 :]], axis=1)


def _traced_pair(ed: list[int], es: list[int], ed_first: bool) -> tuple[int, int] | None:
    """Pick the (ED, ES) frames of one beat near the middle of the clip.

    ES then the next ED (the usual order of the real file), or, when ``ed_first``, ED then the following ES.
    """
    pairs = []
    for s in es:
        candidates = [d for d in ed if d < s] if ed_first else [d for d in ed if d > s]
        if candidates:
            pairs.append((max(candidates) if ed_first else min(candidates), s))
    return pairs[len(pairs) // 2] if pairs else None


def _write_avi(path: Path, frames: np.ndarray, fps: float) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), float(fps), (SIZE, SIZE), True)
    if not writer.isOpened():
        raise InputError("OpenCV cannot open an MJPG AVI writer here", path)
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()


def _video(rng: np.random.Generator, frame_range: tuple[int, int]) -> dict:
    """Draw and render one video; returns its frames, truth and the scan for the tracings."""
    heart = random_heart(rng)
    fps = int(rng.integers(45, 58))
    n = int(rng.integers(frame_range[0], frame_range[1] + 1))
    cycle = random_cycle(rng)
    if n < 2.2 * fps * cycle.period:  # short clips: beat faster so that at least two beats fit
        hr = 60.0 * 2.2 * fps / n
        cycle = Cycle(heart_rate=hr, es_phase=min(0.45, cycle.es_phase * hr / cycle.heart_rate))
    quality = str(rng.choice(QUALITIES, p=[0.4, 0.4, 0.2]))
    theta = float(np.radians(rng.uniform(-10.0, 10.0)))
    scan = random_scan(
        rng, heart, height=SIZE * RENDER, width=SIZE * RENDER, theta=theta, quality=quality, right_heart=True
    )
    phase0 = float(rng.uniform(0.0, 1.0))
    fractions = volume_fraction(phase0 + np.arange(n) / fps / cycle.period, cycle.es_phase, heart.esv_ratio)
    big, _ = render_view(rng, heart, scan, fractions)
    frames = np.stack([cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC) for f in big])
    ed, es = cycle.key_frames(phase0, fps, n)
    return {"heart": heart, "cycle": cycle, "fps": fps, "frames": frames, "fractions": fractions, "scan": scan,
            "ed": ed, "es": es, "quality": quality}  # fmt: skip


def _rows_for(name: str, v: dict, pair: tuple[int, int] | None, quirk: str) -> list[dict[str, str]]:
    if pair is None or quirk == "untraced":
        return []
    rows = []
    for frame in sorted(pair):
        lines = chords(v["heart"], v["scan"], float(v["fractions"][frame]))
        if quirk == "wrong_row_count" and frame == max(pair):
            lines = lines[:-1]
        for x1, y1, x2, y2 in lines:
            rows.append({"FileName": f"{name}.avi", "X1": fmt(x1, 6), "Y1": fmt(y1, 6), "X2": fmt(x2, 6),
                         "Y2": fmt(y2, 6), "Frame": str(frame)})  # fmt: skip
    return rows


def _truth_row(name: str, split: str, v: dict, pair: tuple[int, int] | None, quirk: str) -> dict[str, str]:
    heart, cycle = v["heart"], v["cycle"]
    px = (v["scan"].spacing[0] * RENDER) * (v["scan"].spacing[1] * RENDER)
    ed, es = pair if pair is not None else (-1, -1)

    def area(frame: int) -> str:
        sec = heart.section(v["scan"].theta, float(v["fractions"][frame]))
        return fmt(sec.lv_area() / px, 3) if frame >= 0 else ""

    return {
        "FileName": name, "Split": split, "EDV": fmt(heart.edv_ml), "ESV": fmt(heart.esv_ml), "EF": fmt(heart.ef),
        "HeartRate": fmt(cycle.heart_rate, 2), "FPS": str(v["fps"]), "NumberOfFrames": str(len(v["frames"])),
        "ed_frames": " ".join(map(str, v["ed"])), "es_frames": " ".join(map(str, v["es"])),
        "traced_ed_frame": str(ed), "traced_es_frame": str(es),
        "traced_ed_volume_ml": fmt(v["fractions"][ed] * heart.edv_ml) if ed >= 0 else "",
        "traced_es_volume_ml": fmt(v["fractions"][es] * heart.edv_ml) if es >= 0 else "",
        "lv_area_ed_px": area(ed), "lv_area_es_px": area(es), "spacing_mm": fmt(v["scan"].spacing[0] * RENDER, 6),
        "quality": v["quality"], "tracing": "ok" if pair is not None and quirk == "" else quirk or "untraced",
    }  # fmt: skip


def _video_files(
    root: Path, seed: int, frame_range: tuple[int, int], ed_first_fraction: float, quirks: dict[int, str], k: int
) -> tuple[dict[str, str], list[dict[str, str]], dict[str, str]]:
    """Render and write video k; its FileList row, VolumeTracings rows and truth row (a top-level function so
    worker processes can run it; video k depends only on ``seed`` and ``k``)."""
    rng = np.random.default_rng((seed, k, 2))
    name = f"0X{int(rng.integers(0, 2**62)):016X}"
    v = _video(rng, frame_range)
    pair = _traced_pair(v["ed"], v["es"], bool(rng.random() < ed_first_fraction))
    pair = pair or _traced_pair(v["ed"], v["es"], True) or _traced_pair(v["ed"], v["es"], False)
    split = split_of(k, ("TRAIN", "VAL", "TEST"), 8)
    _write_avi(root / "Videos" / f"{name}.avi", v["frames"], v["fps"])
    heart = v["heart"]
    row = {"FileName": name, "EF": fmt(heart.ef), "ESV": fmt(heart.esv_ml), "EDV": fmt(heart.edv_ml),
           "FrameHeight": str(SIZE), "FrameWidth": str(SIZE), "FPS": str(v["fps"]),
           "NumberOfFrames": str(len(v["frames"])), "Split": split}  # fmt: skip
    quirk = quirks.get(k, "")
    return row, _rows_for(name, v, pair, quirk), _truth_row(name, split, v, pair, quirk)


def synth_echonet(
    out: str | Path,
    videos: int = 4,
    seed: int = 0,
    overwrite: bool = False,
    *,
    frames: tuple[int, int] = (100, 200),
    untraced: int = 0,
    malformed: int = 0,
    ed_first_fraction: float = 0.2,
    workers: int = 1,
) -> Path:
    """Write ``videos`` synthetic EchoNet-Dynamic videos with their FileList and VolumeTracings.

    Args:
        out: output folder; created if missing.
        videos: number of videos (video k is the same whatever ``videos`` is).
        seed: base seed.
        overwrite: allow writing into a non-empty folder (files written here are replaced; nothing is deleted).
        frames: inclusive range of frames per video (short videos get a faster heart rate to hold two beats).
        untraced: number of videos listed in FileList.csv without any tracing rows.
        malformed: number of videos whose second traced frame has 20 rows instead of 21.
        ed_first_fraction: probability that the traced ED frame precedes the traced ES frame.

    Returns:
        The output folder.

    Raises:
        InputError: ``out`` is a file or a non-empty folder without ``overwrite``.
        ValueError: bad counts or frame range.
    """
    if videos < 1 or frames[0] < 16 or frames[1] < frames[0] or untraced < 0 or malformed < 0:
        raise ValueError(f"need videos >= 1, 16 <= frames[0] <= frames[1], quirk counts >= 0; got {videos}, {frames}")
    if untraced + malformed > videos:
        raise ValueError(f"untraced + malformed ({untraced} + {malformed}) exceeds videos ({videos})")
    root = prepare_output(out, overwrite)
    (root / "Videos").mkdir(exist_ok=True)
    order = np.random.default_rng((seed, 3)).permutation(videos)
    quirks = {int(k): "untraced" for k in order[:untraced]}
    quirks.update({int(k): "wrong_row_count" for k in order[untraced : untraced + malformed]})
    one = partial(_video_files, root, seed, frames, ed_first_fraction, quirks)
    if workers > 1 and videos > 1:
        with ProcessPoolExecutor(max_workers=min(workers, videos)) as pool:
            per_video = list(pool.map(one, range(videos), chunksize=max(1, videos // (8 * workers))))
    else:
        per_video = [one(k) for k in range(videos)]
    files = [f for f, _, _ in per_video]
    tracings = [row for _, rows, _ in per_video for row in rows]
    truth = [t for _, _, t in per_video]
    write_csv(root / "FileList.csv", FILELIST_COLUMNS, files)
    write_csv(root / "VolumeTracings.csv", TRACING_COLUMNS, tracings)
    write_csv(root / "truth.csv", TRUTH_COLUMNS, truth)
    logger.info("wrote %d EchoNet videos to %s (%d untraced, %d malformed)", videos, root, untraced, malformed)
    return root
