"""Synthetic EchoNet-Dynamic writer: exact CSV headers, AVIs read back with OpenCV, tracings on the LV, quirks."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from gdkvm.data.synthetic import synth_echonet
from gdkvm.errors import InputError

FRAMES = (40, 56)


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open() as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _frames(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    return np.stack(out)


def _polygon_mask(rows: list[dict[str, str]]) -> np.ndarray:
    pts = np.array([[float(r[k]) for k in ("X1", "Y1", "X2", "Y2")] for r in rows])[1:]
    polygon = np.concatenate([pts[:, :2], pts[::-1, 2:]])
    mask = np.zeros((112, 112), np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1, shift=4)
    return mask.astype(bool)


@pytest.fixture(scope="module")
def echonet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_echonet(tmp_path_factory.mktemp("e") / "echonet", videos=5, seed=4, frames=FRAMES, untraced=1,
                         malformed=1, ed_first_fraction=0.5)  # fmt: skip


def test_files_and_headers(echonet: Path) -> None:
    header, files = _read(echonet / "FileList.csv")
    assert header == ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]
    header, tracings = _read(echonet / "VolumeTracings.csv")
    assert header == ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]
    assert sorted(p.name for p in (echonet / "Videos").iterdir()) == sorted(f["FileName"] + ".avi" for f in files)
    assert {f["Split"] for f in files} == {"TRAIN", "VAL", "TEST"}
    assert all(not f["FileName"].endswith(".avi") and f["FileName"].startswith("0X") for f in files)
    assert all(r["FileName"].endswith(".avi") for r in tracings)
    for f in files:
        video = _frames(echonet / "Videos" / f"{f['FileName']}.avi")
        assert video.shape == (int(f["NumberOfFrames"]), 112, 112, 3)
        assert FRAMES[0] <= len(video) <= FRAMES[1] and 45 <= int(f["FPS"]) <= 57
        assert np.abs(video[..., 0].astype(int) - video[..., 2]).max() <= 8  # grey stored as 3 channels
        ef = 100 * (1 - float(f["ESV"]) / float(f["EDV"]))
        assert ef == pytest.approx(float(f["EF"]), abs=0.01)


def test_tracings_on_the_cavity_and_quirks(echonet: Path) -> None:
    _, tracings = _read(echonet / "VolumeTracings.csv")
    _, truth = _read(echonet / "truth.csv")
    by_video: dict[str, dict[int, list[dict[str, str]]]] = defaultdict(lambda: defaultdict(list))
    for r in tracings:
        by_video[r["FileName"][:-4]][int(r["Frame"])].append(r)
    quirks = [t["tracing"] for t in truth]
    assert sorted(quirks) == ["ok", "ok", "ok", "untraced", "wrong_row_count"]
    orders = set()
    for t in truth:
        frames = by_video.get(t["FileName"], {})
        if t["tracing"] == "untraced":
            assert not frames
            continue
        ed, es = int(t["traced_ed_frame"]), int(t["traced_es_frame"])
        assert sorted(frames) == sorted((ed, es)) and str(ed) in t["ed_frames"].split()
        counts = sorted(len(rows) for rows in frames.values())
        assert counts == ([20, 21] if t["tracing"] == "wrong_row_count" else [21, 21])
        orders.add(ed < es)
        file_frames = [int(r["Frame"]) for r in tracings if r["FileName"] == t["FileName"] + ".avi"]
        assert file_frames == sorted(file_frames)
        video = _frames(echonet / "Videos" / f"{t['FileName']}.avi")[..., 0].astype(float)
        for frame, rows in frames.items():
            if len(rows) != 21:
                continue
            inside = _polygon_mask(rows)
            ring = cv2.dilate(inside.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~inside
            assert video[frame][inside].mean() < 0.5 * video[frame][ring].mean()  # dark cavity, bright wall
        areas = {f: _polygon_mask(rows).sum() for f, rows in frames.items() if len(rows) == 21}
        if len(areas) == 2:
            assert areas[ed] > areas[es]
            assert areas[ed] == pytest.approx(float(t["lv_area_ed_px"]), rel=0.12)
    assert False in orders  # ES then the next ED, the usual order of the real file


def test_video_independent_of_count_and_overwrite(tmp_path: Path, echonet: Path) -> None:
    small = synth_echonet(tmp_path / "two", videos=2, seed=4, frames=FRAMES, ed_first_fraction=1.0)
    _, files_small = _read(small / "FileList.csv")
    _, files_big = _read(echonet / "FileList.csv")
    assert files_small == files_big[:2]
    _, truth = _read(small / "truth.csv")
    assert all(int(t["traced_ed_frame"]) < int(t["traced_es_frame"]) for t in truth)  # ED traced before ES
    name = files_small[1]["FileName"] + ".avi"
    np.testing.assert_array_equal(_frames(small / "Videos" / name), _frames(echonet / "Videos" / name))
    with pytest.raises(InputError, match="not empty"):
        synth_echonet(small, videos=1, frames=FRAMES)
    with pytest.raises(ValueError, match="exceeds"):
        synth_echonet(tmp_path / "bad", videos=1, frames=FRAMES, untraced=1, malformed=1)


def test_workers_write_the_same_files(tmp_path: Path, echonet: Path) -> None:
    parallel = synth_echonet(tmp_path / "par", videos=5, seed=4, frames=FRAMES, untraced=1, malformed=1,
                             ed_first_fraction=0.5, workers=2)  # fmt: skip
    for name in ("FileList.csv", "VolumeTracings.csv", "truth.csv"):
        assert (parallel / name).read_bytes() == (echonet / name).read_bytes(), name
    for video in sorted((echonet / "Videos").glob("*.avi")):
        assert (parallel / "Videos" / video.name).read_bytes() == video.read_bytes(), video.name
