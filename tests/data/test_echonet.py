"""EchoNetDataset on tiny hand-written EchoNet-Dynamic folders: ED/ES by area, malformed tracings, splits, errors."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from matplotlib.path import Path as MplPath

from gdkvm.data.echonet import EchoNetDataset, choose_ed_es, polygon_area, polygon_from_rows
from gdkvm.errors import InputError

SIDE = 112
FILELIST_HEADER = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]


def tracing_rows(half_width: float, cx: float = 56.0, top: float = 20.0, bottom: float = 90.0) -> np.ndarray:
    """[21, 4] rows: a vertical long axis, then 20 horizontal chords of an elliptic cavity of max ``half_width``."""
    rows = [[cx, top, cx, bottom]]
    for level in np.linspace(top + 2, bottom - 1, 20):
        hw = half_width * np.sqrt(max(0.0, 1 - ((level - (top + bottom) / 2) / ((bottom - top) / 2)) ** 2)) + 1
        rows.append([cx - hw, level, cx + hw, level])
    return np.asarray(rows)


def write_video(path: Path, n: int) -> None:
    """MJPG AVI whose frame t is uniformly grey at level 2 * t + 10 (readable back within JPEG error)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 50.0, (SIDE, SIDE))
    for t in range(n):
        writer.write(np.full((SIDE, SIDE, 3), 2 * t + 10, dtype=np.uint8))
    writer.release()


def write_echonet(root: Path, videos: list[dict]) -> Path:
    """Each video dict: name, n, split, tracings {frame: [k, 4] rows} (written in the given order)."""
    (root / "Videos").mkdir(parents=True)
    with (root / "FileList.csv").open("w", newline="") as fl, (root / "VolumeTracings.csv").open("w", newline="") as vt:
        files, traces = csv.writer(fl), csv.writer(vt)
        files.writerow(FILELIST_HEADER)
        traces.writerow(["FileName", "X1", "Y1", "X2", "Y2", "Frame"])
        for v in videos:
            write_video(root / "Videos" / f"{v['name']}.avi", v["n"])
            files.writerow([v["name"], 60.5, 40, 100, SIDE, SIDE, 50, v["n"], v["split"]])
            for frame, rows in v.get("tracings", {}).items():
                for r in rows:
                    traces.writerow([f"{v['name']}.avi", *["" if np.isnan(x) else f"{x:.3f}" for x in r], frame])
    return root


def _bad_rows(kind: str) -> np.ndarray:
    rows = tracing_rows(15)
    if kind == "nan":
        rows[3, 2] = np.nan
    elif kind == "out":
        rows[5, 0] = -7.0
    elif kind == "short":
        rows = rows[:20]
    return rows


@pytest.fixture
def echonet_root(tmp_path: Path) -> Path:
    big, small = tracing_rows(18), tracing_rows(10)
    videos = [
        # ES (frame 10) before ED (frame 30); listed ED first, so the file order would not say which is which.
        {"name": "0X01", "n": 40, "split": "TRAIN", "tracings": {30: big, 10: small}},
        {"name": "0X02", "n": 30, "split": "train", "tracings": {20: small, 5: big}},
        {"name": "0X03", "n": 20, "split": "TRAIN"},  # untraced
        {"name": "0X04", "n": 20, "split": "TRAIN", "tracings": {3: big, 9: _bad_rows("short")}},
        {"name": "0X05", "n": 20, "split": "TRAIN", "tracings": {3: big, 9: _bad_rows("nan")}},
        {"name": "0X06", "n": 20, "split": "TRAIN", "tracings": {3: big, 9: _bad_rows("out")}},
        {"name": "0X07", "n": 20, "split": "TRAIN", "tracings": {3: big, 25: small}},  # frame beyond the video
        {"name": "0X08", "n": 12, "split": "Val", "tracings": {2: big, 5: small}},
        {"name": "0X09", "n": 12, "split": "TEST", "tracings": {1: small, 8: big}},
    ]
    return write_echonet(tmp_path / "echonet", videos)


def test_polygon_and_area_rule() -> None:
    rows = tracing_rows(10)
    poly = polygon_from_rows(rows)
    assert poly.shape == (40, 2)
    np.testing.assert_allclose(poly[0], rows[1, :2])
    np.testing.assert_allclose(poly[19], rows[20, :2])
    np.testing.assert_allclose(poly[20], rows[20, 2:])
    np.testing.assert_allclose(poly[39], rows[1, 2:])
    square = np.array([[0, 0], [4, 0], [4, 3], [0, 3]], dtype=float)
    assert polygon_area(square) == 12.0
    assert choose_ed_es({4: square, 9: square * 2}) == (9, 4)
    assert choose_ed_es({4: square * 2, 9: square}) == (4, 9)
    assert choose_ed_es({4: square, 9: square.copy()}) == (9, 4)  # tie: the later frame is ED


def test_drops_and_counts(echonet_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gdkvm.data.echonet"):
        ds = EchoNetDataset(echonet_root, split="train", num_frames=5, size=64)
    assert [v.name for v in ds.videos] == ["0X01", "0X02"]
    assert ds.dropped == {"untraced": 1, "malformed": 4}
    assert ds.malformed == {"row_count": 1, "not_a_number": 1, "out_of_frame": 1, "frame_beyond_video": 1}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "dropped 5 of 7 videos" in warnings[0].getMessage()


def test_ed_es_by_area_and_time_order(echonet_root: Path) -> None:
    ds = EchoNetDataset(echonet_root, split="train", num_frames=5, size=SIDE)
    first, second = ds.videos
    assert (first.ed, first.es) == (30, 10) and (second.ed, second.es) == (5, 20)
    s = ds[0]  # ES (10) comes first in time: frames 10, 15, 20, 25, 30
    assert (s["meta"]["ed_index"], s["meta"]["es_index"]) == (4, 0)
    levels = (s["frames"][:, 0, 50, 50] * 255).tolist()
    np.testing.assert_allclose(levels, [2 * t + 10 for t in (10, 15, 20, 25, 30)], atol=3)
    assert s["labelled"].tolist() == [True, False, False, False, True]
    assert int(s["masks"][4].sum()) > int(s["masks"][0].sum()) > 0 and int(s["masks"][1:4].sum()) == 0
    s2 = ds[1]
    assert (s2["meta"]["ed_index"], s2["meta"]["es_index"]) == (0, 4) and s2["meta"]["ed_frame"] == 5


def test_mask_matches_polygon(echonet_root: Path) -> None:
    ds = EchoNetDataset(echonet_root, split="train", num_frames=3, size=128)
    s = ds[1]
    assert s["frames"].shape == (3, 1, 128, 128) and s["masks"].dtype == torch.int64
    assert bool(torch.isnan(s["spacing"]).all()) and s["meta"]["ef"] == 60.5 and s["meta"]["fps"] == 50.0
    poly = polygon_from_rows(tracing_rows(18))
    centres = (np.stack(np.meshgrid(np.arange(128), np.arange(128)), -1).reshape(-1, 2) + 0.5) * SIDE / 128 - 0.5
    expected = MplPath(poly).contains_points(centres).reshape(128, 128)
    got = s["masks"][0].numpy().astype(bool)
    assert (got & expected).sum() / (got | expected).sum() > 0.95


def test_full_mode_and_splits(echonet_root: Path) -> None:
    full = EchoNetDataset(echonet_root, split="val", mode="full", size=32)
    s = full[0]
    assert s["frames"].shape == (12, 1, 32, 32)
    assert torch.nonzero(s["labelled"]).flatten().tolist() == [2, 5]
    assert (s["meta"]["ed_index"], s["meta"]["es_index"]) == (2, 5)
    assert [v.name for v in EchoNetDataset(echonet_root, split="test", size=32).videos] == ["0X09"]
    assert len(EchoNetDataset(echonet_root, split="all", size=32)) == 4
    repeat = EchoNetDataset(echonet_root, split="val", num_frames=8, size=32)[0]  # 4 frames span, 8 asked
    assert repeat["labelled"].sum() >= 2 and (repeat["meta"]["ed_index"], repeat["meta"]["es_index"]) == (0, 7)


def test_bad_input(tmp_path: Path, echonet_root: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        EchoNetDataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="is empty"):
        EchoNetDataset(tmp_path / "empty")
    (tmp_path / "other" / "x").mkdir(parents=True)
    with pytest.raises(InputError, match="missing FileList.csv, VolumeTracings.csv, Videos"):
        EchoNetDataset(tmp_path / "other")
    tracing_csv = echonet_root / "VolumeTracings.csv"
    text = tracing_csv.read_text()
    tracing_csv.write_text(text.replace("X1,Y1,X2,Y2,Frame", "X1,Y,X2,Y2,Frm", 1))
    with pytest.raises(InputError, match=r"VolumeTracings.csv: CSV lacks the column\(s\) Y1, Frame"):
        EchoNetDataset(echonet_root)
    tracing_csv.write_text(text)
    (echonet_root / "Videos" / "0X02.avi").unlink()
    with pytest.raises(InputError, match="1 video.*missing: 0X02.avi"):
        EchoNetDataset(echonet_root)
    (echonet_root / "Videos" / "0X02.avi").write_bytes(b"garbage")
    with pytest.raises(InputError, match="0X02.avi: cannot open the video|0X02.avi: video has no readable"):
        EchoNetDataset(echonet_root)[1]


# --- on the synthetic generator (gdkvm.data.synthetic), checked against its truth.csv ---------------------------


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gdkvm.data.synthetic import synth_echonet

    out = tmp_path_factory.mktemp("synth") / "EchoNet-Dynamic"
    return synth_echonet(out, videos=10, seed=0, frames=(40, 60), untraced=1, malformed=2, ed_first_fraction=0.4)


def _truth(root: Path) -> dict[str, dict[str, str]]:
    with (root / "truth.csv").open() as fh:
        return {row["FileName"]: row for row in csv.DictReader(fh)}


def test_synthetic_against_truth(synth_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    truth = _truth(synth_root)
    with caplog.at_level(logging.WARNING, logger="gdkvm.data.echonet"):
        ds = EchoNetDataset(synth_root, split="all", num_frames=10, size=112)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert ds.dropped == {"untraced": 1, "malformed": 2} and ds.malformed == {"row_count": 2}
    assert {v.name for v in ds.videos} == {name for name, row in truth.items() if row["tracing"] == "ok"}
    orders = set()
    for i, video in enumerate(ds.videos):
        row, s = truth[video.name], ds[i]
        assert (video.ed, video.es) == (int(row["traced_ed_frame"]), int(row["traced_es_frame"]))  # by area
        orders.add(video.ed < video.es)
        meta = s["meta"]
        assert meta["ef"] == pytest.approx(float(row["EF"])) and meta["fps"] == float(row["FPS"])
        lv = s["masks"].flatten(1).sum(1).double()
        assert float(lv[meta["ed_index"]]) == pytest.approx(float(row["lv_area_ed_px"]), rel=0.08)
        assert float(lv[meta["es_index"]]) == pytest.approx(float(row["lv_area_es_px"]), rel=0.08)
        assert {meta["ed_index"], meta["es_index"]} == {0, 9} and int(s["labelled"].sum()) == 2
    assert orders == {True, False}  # both ED-first and ES-first videos were loaded


def test_synthetic_frames_are_the_video_frames(synth_root: Path) -> None:
    ds = EchoNetDataset(synth_root, split="all", num_frames=10, size=112)
    video = ds.videos[0]
    capture, decoded = cv2.VideoCapture(str(video.path)), []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    start, stop = min(video.ed, video.es), max(video.ed, video.es)
    expected = np.stack(decoded)[np.floor(np.linspace(start, stop, 10) + 0.5).astype(int)]
    np.testing.assert_array_equal((ds[0]["frames"][:, 0] * 255).round().numpy().astype(np.uint8), expected)
    full = EchoNetDataset(synth_root, split="all", mode="full", size=112)[0]
    assert full["frames"].shape[0] == len(decoded) == full["meta"]["num_source_frames"]
    assert torch.nonzero(full["labelled"]).flatten().tolist() == sorted([video.ed, video.es])


def test_synthetic_splits(synth_root: Path) -> None:
    truth = _truth(synth_root)
    for split in ("train", "val", "test"):
        ds = EchoNetDataset(synth_root, split=split, size=32)
        expected = {n for n, r in truth.items() if r["Split"] == split.upper() and r["tracing"] == "ok"}
        assert {v.name for v in ds.videos} == expected


def test_without_frame_count_column(echonet_root: Path) -> None:
    """Without NumberOfFrames the frame count is probed from the video, so tracings past the end still drop."""
    filelist = echonet_root / "FileList.csv"
    rows = list(csv.reader(filelist.open()))
    drop = rows[0].index("NumberOfFrames")
    with filelist.open("w", newline="") as fh:
        csv.writer(fh).writerows([r[:drop] + r[drop + 1 :] for r in rows])
    ds = EchoNetDataset(echonet_root, split="train", size=32)
    assert ds.malformed["frame_beyond_video"] == 1 and [v.name for v in ds.videos] == ["0X01", "0X02"]
    assert [v.ed_last_in_file for v in ds.videos] == [False, True]  # 0X01 lists its ED (larger) frame first
