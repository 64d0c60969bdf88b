from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk

from gdkvm.cli import main as cli_main
from gdkvm.data.io import read_clip
from gdkvm.data.video import write_video
from tests.helpers import noise_clip, tiny_model_file


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return tiny_model_file(tmp_path_factory.mktemp("model"))


def test_segment_cli_writes_masks_overlay_and_areas(tmp_path, model_file):
    frames = noise_clip(frames=9, size=(70, 90))
    clip = write_video(tmp_path / "clip.mp4", frames, fps=25.0)
    out = tmp_path / "out"
    assert cli_main(["segment", str(clip), "--ckpt", str(model_file), "--out", str(out), "--device", "cpu"]) == 0

    masks = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "clip_masks.nii.gz")))
    assert masks.shape == (9, 70, 90)
    assert set(np.unique(masks)) <= {0, 1}
    video = read_clip(out / "clip_overlay.mp4")
    assert video.frames.shape[0] == 9
    with (out / "clip_areas.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["frame"]) for r in rows] == list(range(9))
    assert [int(r["lv_area_px"]) for r in rows] == [int((m == 1).sum()) for m in masks]
    assert rows[1]["time_s"] == "0.0400"


def test_segment_refuses_to_overwrite(tmp_path, model_file, capsys):
    clip = write_video(tmp_path / "clip.mp4", noise_clip(frames=3), fps=10.0)
    args = ["segment", str(clip), "--ckpt", str(model_file), "--out", str(tmp_path / "o"), "--device", "cpu"]
    assert cli_main(args) == 0
    before = (tmp_path / "o" / "clip_masks.nii.gz").read_bytes()
    assert cli_main(args) == 2
    assert "exists already" in capsys.readouterr().err
    assert (tmp_path / "o" / "clip_masks.nii.gz").read_bytes() == before
    assert cli_main([*args, "--overwrite"]) == 0


def test_segment_bad_input_is_one_line_error(tmp_path, model_file, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    code = cli_main(["segment", str(bad), "--ckpt", str(model_file), "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert "broken.mp4" in err and "Traceback" not in err
    missing = cli_main(["segment", str(tmp_path / "nope.avi"), "--ckpt", str(model_file), "--out", str(tmp_path)])
    assert missing == 2
