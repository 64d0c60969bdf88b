"""EchoNet-Dynamic loader: ``FileList.csv`` + ``VolumeTracings.csv`` + ``Videos/*.avi``.

Facts (``docs/reference/echo-data-and-ef.md`` section 2): ``FileList.csv`` names videos without ``.avi``;
``VolumeTracings.csv`` names them with it and holds, per traced frame, 21 rows ``X1,Y1,X2,Y2`` in the pixel frame of
the 112x112 video (x = column, y = row): row 0 is the long axis, rows 1..20 are chords. The LV polygon is (X1, Y1)
of rows 1..20 followed by (X2, Y2) of rows 20..1. ``Frame`` is a 0-based index into the decoded video.

Per video we keep the traced frames that pass validation (21 rows, finite numbers, inside the frame, frame index
inside the video, non-zero polygon area); ED is the valid traced frame with the larger polygon area and ES the one
with the smaller (on an exact tie the later frame is ED, as in the official loader's "last traced frame is large"
convention). Videos left with fewer than two valid traced frames are dropped with one warning that counts them.
No pixel spacing is released, so ``spacing`` is NaN.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from gdkvm.data.sampling import (
    check_mode,
    check_size,
    key_positions,
    make_sample,
    nan_if_missing,
    resize_frames,
    resized_spacing,
    sample_indices,
)
from gdkvm.errors import InputError

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test", "all")
FILELIST_COLUMNS: tuple[str, ...] = ("FileName", "EF", "Split")
TRACING_COLUMNS: tuple[str, ...] = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
ROWS_PER_TRACING = 21
DEFAULT_SIDE = 112


@dataclass(frozen=True)
class EchoNetVideo:
    """One usable video: ED/ES frame indices and their LV polygons ([40, 2] (x, y) video pixel coordinates)."""

    name: str
    path: Path
    ed: int
    es: int
    ed_polygon: np.ndarray
    es_polygon: np.ndarray
    ef: float
    fps: float
    num_frames: int
    height: int
    width: int
    ed_last_in_file: bool = True


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts, after checking that the ``required`` columns exist."""
    if not path.is_file():
        raise InputError("file not found", path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in required if c not in columns]
            if missing:
                found = ", ".join(columns) or "nothing"
                raise InputError(f"CSV lacks the column(s) {', '.join(missing)} (found {found})", path)
            reader.fieldnames = columns
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"cannot read the CSV file ({err})", path) from None


def _stem(file_name: str) -> str:
    """Video name without ``.avi`` (FileList.csv omits it, VolumeTracings.csv includes it)."""
    name = file_name.strip()
    return name[:-4] if name.lower().endswith(".avi") else name


def polygon_from_rows(rows: np.ndarray) -> np.ndarray:
    """LV polygon of one traced frame.

    Args:
        rows: [21, 4] float (X1, Y1, X2, Y2); row 0 is the long axis, rows 1..20 the chords.

    Returns:
        [40, 2] float (x, y): the X1/Y1 end points of rows 1..20, then the X2/Y2 end points of rows 20..1.
    """
    return np.concatenate([rows[1:, 0:2], rows[:0:-1, 2:4]], axis=0)


def polygon_area(polygon: np.ndarray) -> float:
    """Absolute shoelace area of a polygon [N, 2] (x, y), in squared pixels."""
    x, y = polygon[:, 0], polygon[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def rasterize(polygon: np.ndarray, src_shape: tuple[int, int], size: int) -> np.ndarray:
    """Fill a polygon given in source pixel coordinates on a ``size x size`` grid.

    Args:
        polygon: [N, 2] (x, y) in the pixel frame of a ``src_shape`` (H, W) image, pixel centres at integers.
        src_shape: (H, W) of the source video.
        size: output side.

    Returns:
        [size, size] uint8 mask, 1 inside.
    """
    scale = np.array([size / src_shape[1], size / src_shape[0]])
    points = ((polygon + 0.5) * scale - 0.5) * 16.0  # 4 fractional bits for cv2's sub-pixel vertices
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask


def _check_tracing(rows: np.ndarray, frame: float, num_frames: int, shape: tuple[int, int]) -> str | None:
    """Why a traced frame is unusable, or None when it is valid."""
    if rows.shape[0] != ROWS_PER_TRACING:
        return "row_count"
    if not (np.isfinite(rows).all() and math.isfinite(frame)) or frame != int(frame) or frame < 0:
        return "not_a_number"
    # Pixel centres at integers: the image spans [-0.5, side - 0.5]; half a pixel of slack beyond that.
    xs, ys = rows[:, 0::2], rows[:, 1::2]
    if xs.min() < -1.0 or ys.min() < -1.0 or xs.max() > shape[1] or ys.max() > shape[0]:
        return "out_of_frame"
    if num_frames > 0 and frame >= num_frames:
        return "frame_beyond_video"
    if polygon_area(polygon_from_rows(rows)) < 1.0:
        return "degenerate_polygon"
    return None


def _group_tracings(path: Path, wanted: set[str]) -> dict[str, dict[float, list[list[float]]]]:
    """Tracing rows per video stem and frame, in order of first appearance."""
    grouped: dict[str, dict[float, list[list[float]]]] = {}
    for row in _read_csv(path, TRACING_COLUMNS):
        stem = _stem(row["FileName"])
        if stem not in wanted:
            continue
        frame = nan_if_missing(row["Frame"])
        frame = -1.0 if math.isnan(frame) else frame  # one group for unparseable frame numbers
        values = [nan_if_missing(row[c]) for c in ("X1", "Y1", "X2", "Y2")]
        grouped.setdefault(stem, {}).setdefault(frame, []).append(values)
    return grouped


def choose_ed_es(valid: dict[int, np.ndarray]) -> tuple[int, int]:
    """ED = the traced frame with the largest polygon area, ES = the smallest; ties make the later frame ED.

    Args:
        valid: frame index -> [40, 2] polygon, at least two entries.

    Returns:
        (ed_frame, es_frame).
    """
    areas = {frame: polygon_area(polygon) for frame, polygon in valid.items()}
    ed = max(areas, key=lambda f: (areas[f], f))
    es = min((f for f in areas if f != ed), key=lambda f: (areas[f], -f))
    return ed, es


def _video_record(
    row: dict[str, str], root: Path, frames: dict[float, list[list[float]]], bad: Counter
) -> EchoNetVideo | str:
    """An :class:`EchoNetVideo`, or the reason string when the video has fewer than two valid traced frames."""
    name = _stem(row["FileName"])
    h, w = nan_if_missing(row.get("FrameHeight")), nan_if_missing(row.get("FrameWidth"))
    shape = (int(h), int(w)) if h > 0 and w > 0 else (DEFAULT_SIDE, DEFAULT_SIDE)  # NaN compares False
    n = nan_if_missing(row.get("NumberOfFrames"))
    path = root / "Videos" / f"{name}.avi"
    num_frames = int(n) if math.isfinite(n) and n > 0 else _probe_frame_count(path)
    valid: dict[int, np.ndarray] = {}
    for frame, values in frames.items():
        rows = np.asarray(values, dtype=np.float64)
        reason = _check_tracing(rows, frame, num_frames, shape)
        if reason is None:
            valid[int(frame)] = polygon_from_rows(rows)
        else:
            bad[reason] += 1
    if not frames:
        return "untraced"
    if len(valid) < 2:
        return "malformed"
    ed, es = choose_ed_es(valid)
    return EchoNetVideo(
        name=name,
        path=path,
        ed=ed,
        es=es,
        ed_polygon=valid[ed].astype(np.float32),
        es_polygon=valid[es].astype(np.float32),
        ef=nan_if_missing(row["EF"]),
        fps=nan_if_missing(row.get("FPS")),
        num_frames=num_frames,
        height=shape[0],
        width=shape[1],
        ed_last_in_file=list(valid)[-1] == ed,
    )


def _probe_frame_count(path: Path) -> int:
    """Frame count from the container (0 when unknown); used only when FileList.csv lacks NumberOfFrames."""
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    return max(count, 0)


#: Codecs whose every frame is a key frame: seeking to a frame index is exact and cheap.
INTRA_ONLY_FOURCC = frozenset({"MJPG", "mjpg", "FFV1", "ffv1", "png ", "MPNG", "Y800", "GREY", "I420", "IYUV", "DIB "})


def read_gray_frames(path: Path, indices: np.ndarray | None) -> np.ndarray:
    """Decode chosen frames of a video as grayscale with OpenCV, reading only the span that holds them.

    For intra-only codecs (MJPEG, as EchoNet-Dynamic ships) the reader seeks straight to the first wanted frame;
    for other codecs it decodes from the start. Either way it stops after the last wanted frame.

    Args:
        path: video file.
        indices: [T] sorted frame indices, or None for every frame.

    Returns:
        [T, H, W] uint8 (all frames when ``indices`` is None).
    """
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError("cannot open the video", path)
    wanted = None if indices is None else {int(i) for i in indices}
    first, last = (0, -1) if indices is None else (int(indices.min()), int(indices.max()))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("latin-1")
    index = first if first > 0 and fourcc in INTRA_ONLY_FOURCC and capture.set(cv2.CAP_PROP_POS_FRAMES, first) else 0
    frames: dict[int, np.ndarray] = {}
    try:
        while indices is None or index <= last:
            if not capture.grab():
                break
            if wanted is None or index in wanted:
                ok, image = capture.retrieve()
                if not ok:
                    raise InputError(f"cannot decode frame {index}", path)
                frames[index] = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
            index += 1
    finally:
        capture.release()
    if indices is None:
        if not frames:
            raise InputError("video has no readable frames", path)
        return np.stack([frames[i] for i in range(index)])
    if last not in frames:
        raise InputError(f"video ends before frame {last} (read up to frame {index - 1})", path)
    return np.stack([frames[int(i)] for i in indices])


def find_echonet(root: str | Path) -> Path:
    """Check that ``root`` looks like an EchoNet-Dynamic folder and return it."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError("EchoNet folder does not exist" if not root.exists() else "EchoNet root is not a folder", root)
    if not any(root.iterdir()):
        raise InputError("EchoNet folder is empty", root)
    missing = [name for name in ("FileList.csv", "VolumeTracings.csv", "Videos") if not (root / name).exists()]
    if missing:
        raise InputError(
            f"not an EchoNet-Dynamic folder: missing {', '.join(missing)} "
            "(expected FileList.csv, VolumeTracings.csv and Videos/*.avi)",
            root,
        )
    return root


class EchoNetDataset(Dataset):
    """EchoNet-Dynamic clips (apical 4-chamber, LV only) as dicts of the shared clip contract.

    Args:
        root: folder with ``FileList.csv``, ``VolumeTracings.csv`` and ``Videos/``.
        split: "train", "val", "test" (the FileList ``Split`` column, any case) or "all".
        num_frames: frames per clip in clip mode, sampled uniformly between ED and ES, whichever comes first.
        size: output side length in pixels.
        mode: "clip" (``num_frames`` frames between ED and ES) or "full" (every frame of the video).
        transform: optional callable applied to the finished sample dict (e.g. :class:`ClipTransform`).

    A sample holds ``frames`` [T, 1, size, size] float32 in [0, 1], ``masks`` [T, size, size] int64 (1 = LV on
    the ED and ES frames, zeros elsewhere), ``labelled`` [T] bool, ``spacing`` [2] float32 (NaN, unknown) and
    ``meta`` (id, view, ed_index, es_index, ef, dataset, fps, orig_height, orig_width, num_source_frames,
    ed_frame, es_frame). After construction ``dropped`` counts dropped videos by reason ("untraced",
    "malformed") and ``malformed`` counts rejected traced frames by reason.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_frames: int = 10,
        size: int = 128,
        mode: str = "clip",
        transform: Callable[[dict], dict] | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if mode == "clip" and num_frames < 2:
            raise ValueError(f"num_frames must be >= 2 in clip mode, got {num_frames}")
        self.root, self.split = find_echonet(root), split
        self.num_frames, self.size, self.mode = num_frames, check_size(size), check_mode(mode)
        self.transform = transform
        rows = _read_csv(self.root / "FileList.csv", FILELIST_COLUMNS)
        if not rows:
            raise InputError("FileList.csv has no rows", self.root / "FileList.csv")
        rows = [r for r in rows if split == "all" or r["Split"].strip().upper() == split.upper()]
        stems = {_stem(r["FileName"]) for r in rows}
        tracings = _group_tracings(self.root / "VolumeTracings.csv", stems)
        self.malformed: Counter = Counter()
        self.dropped: Counter = Counter()
        self.videos: list[EchoNetVideo] = []
        for row in rows:
            record = _video_record(row, self.root, tracings.get(_stem(row["FileName"]), {}), self.malformed)
            if isinstance(record, EchoNetVideo):
                self.videos.append(record)
            else:
                self.dropped[record] += 1
        self._report(len(rows))

    def _report(self, listed: int) -> None:
        """One warning for dropped videos; an error for missing video files or an empty split."""
        if self.dropped:
            logger.warning(
                "EchoNet %s: dropped %d of %d videos without two valid traced frames (%s); rejected traced frames: %s",
                self.split, sum(self.dropped.values()), listed, dict(self.dropped), dict(self.malformed) or "none",
            )  # fmt: skip
        missing = [v.path.name for v in self.videos if not v.path.is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise InputError(
                f"{len(missing)} video(s) listed in FileList.csv are missing: {shown}", self.root / "Videos"
            )
        if not self.videos:
            raise InputError(f"no usable videos for split {self.split!r} in FileList.csv", self.root)
        swapped = sum(not v.ed_last_in_file for v in self.videos)
        logger.info(
            "EchoNet %s: %d videos from %s; in %d of them the larger traced frame (ED here) is not the last traced "
            "frame of VolumeTracings.csv (the official loader's 'large' frame)",
            self.split, len(self.videos), self.root, swapped,
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict[str, object]:
        video = self.videos[index]
        idx = sample_indices(video.ed, video.es, self.num_frames) if self.mode == "clip" else None
        raw = read_gray_frames(video.path, idx)
        if idx is None:
            idx = np.arange(raw.shape[0])
            if max(video.ed, video.es) >= raw.shape[0]:
                raise InputError(
                    f"traced frame {max(video.ed, video.es)} is beyond the {raw.shape[0]} frames", video.path
                )
        src_shape = (int(raw.shape[1]), int(raw.shape[2]))
        masks = np.zeros((len(idx), self.size, self.size), dtype=np.uint8)
        labelled = np.zeros(len(idx), dtype=bool)
        for frame, polygon in ((video.ed, video.ed_polygon), (video.es, video.es_polygon)):
            hits = idx == frame
            masks[hits], labelled[hits] = rasterize(polygon, src_shape, self.size), True
        ed_pos, es_pos = key_positions(idx, video.ed, video.es)
        meta = {
            "id": video.name,
            "view": "A4C",
            "ed_index": ed_pos,
            "es_index": es_pos,
            "ef": video.ef,
            "dataset": "echonet",
            "fps": video.fps,
            "orig_height": src_shape[0],
            "orig_width": src_shape[1],
            "num_source_frames": video.num_frames or int(raw.shape[0]),
            "ed_frame": video.ed,
            "es_frame": video.es,
        }
        spacing = resized_spacing(None, src_shape, self.size)
        sample = make_sample(resize_frames(raw, self.size), masks, labelled, spacing, meta)
        return self.transform(sample) if self.transform is not None else sample
