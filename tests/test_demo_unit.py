"""The demo's request logic without a server: upload limits, readable errors, .mhd + .raw, EF lines, model choices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from gdkvm import demo
from gdkvm.data.io import Clip
from gdkvm.data.synthetic import make_clip
from gdkvm.data.video import write_video
from gdkvm.errors import InputError
from gdkvm.segment import Segmentation


@pytest.fixture
def small_video(tmp_path):
    path = tmp_path / "small.mp4"
    write_video(path, np.full((12, 32, 48), 90, dtype=np.uint8), 25)
    return path


def test_clip_extent_reads_headers_only(small_video, tmp_path):
    assert demo.clip_extent(small_video) == (12, 32, 48)
    image = sitk.GetImageFromArray(np.zeros((5, 20, 30), dtype=np.uint8))
    sitk.WriteImage(image, str(tmp_path / "clip.mhd"))
    assert demo.clip_extent(tmp_path / "clip.mhd") == (5, 20, 30)
    (tmp_path / "junk.mp4").write_bytes(b"junk")
    assert demo.clip_extent(tmp_path / "junk.mp4") is None  # left to the reader's own, named error


def test_too_long_or_too_large_clips_are_refused_before_decoding(small_video, monkeypatch):
    demo.check_clip_limits(small_video)
    monkeypatch.setattr(demo, "MAX_FRAMES", 10)
    with pytest.raises(InputError, match="clip has 12 frames; the demo takes at most 10"):
        demo.check_clip_limits(small_video)
    monkeypatch.setattr(demo, "MAX_FRAMES", 3000)
    monkeypatch.setattr(demo, "MAX_PIXELS", 10_000)
    with pytest.raises(InputError, match=r"too large for the demo \(12 frames of 48x32 pixels\)"):
        demo.check_clip_limits(small_video)


def test_bad_uploads_give_one_readable_line_without_server_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "get_model", lambda *a: pytest.fail("a bad upload must not need the model"))
    empty = tmp_path / "sub" / "empty.mp4"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    result, message = demo.safe_analyze(empty, out_dir=tmp_path / "out")
    assert result is None and message == "Error: empty.mp4: file is empty"
    result, message = demo.safe_analyze(tmp_path / "clip.mp4", view="PLAX", out_dir=tmp_path / "out")
    assert message == "Error: view must be one of A4C, A2C, got 'PLAX'"
    assert (
        demo.readable_error(ValueError("/tmp/gradio/ab12/x.avi: corrupt (frame 3/60)")) == "x.avi: corrupt (frame 3/60)"
    )


def test_mhd_upload_with_its_raw_is_gathered_side_by_side(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((3, 8, 8), dtype=np.uint8))
    sitk.WriteImage(image, str(tmp_path / "clip.mhd"))
    up1, up2 = tmp_path / "u1", tmp_path / "u2"  # Gradio puts each uploaded file in its own folder
    up1.mkdir(), up2.mkdir()
    (tmp_path / "clip.mhd").rename(up1 / "clip.mhd")
    (tmp_path / "clip.raw").rename(up2 / "clip.raw")
    head = demo.gather_upload([up2 / "clip.raw", up1 / "clip.mhd"], tmp_path / "input")
    assert head == tmp_path / "input" / "clip.mhd" and (tmp_path / "input" / "clip.raw").is_file()
    assert demo.gather_upload([up1 / "clip.mhd"], tmp_path / "x") == up1 / "clip.mhd"
    with pytest.raises(InputError, match="none of the uploaded files"):
        demo.gather_upload([up2 / "clip.raw", up2 / "clip.raw"], tmp_path / "y")


def _synthetic_segmentation(seed: int, view: str) -> Segmentation:
    """Ground-truth masks of a synthetic clip dressed as a segmentation (no model needed)."""
    frames, masks, info = make_clip(seed, view=view, size=(96, 96), frames=90, fps=50.0, ef=55.0, heart_rate=75.0)
    clip = Clip(frames=frames, fps=50.0, spacing=tuple(info["spacing"]), path=Path(f"{view}.mp4"))
    return Segmentation(clip=clip, labels=masks, lv_prob=(masks == 1).astype(np.float32))


def test_ef_line_names_the_views_and_the_curve_marks_their_frames():
    a4c, a2c = _synthetic_segmentation(1, "4CH"), _synthetic_segmentation(2, "2CH")
    report, line = demo._ef(a2c, None, 50.0, "A2C")  # one A2C clip: single plane, labelled as what it is
    assert line.startswith("EF ") and line.endswith("discs, A2C"), line
    report, line = demo._ef(a4c, a2c, 50.0, "A2C")
    assert line.endswith("biplane, A4C+A2C"), line
    fig = demo.plot_area_curve(a2c.lv_area, report, fps=50.0, unit=a2c.area_unit, view="A2C")
    marked = sorted({round(line.get_xdata()[0] * 50.0) for line in fig.axes[0].lines[1:]})
    expected = sorted({t for b in report.beats for t in (b.ed_a2c, b.es_a2c) if t is not None})
    assert marked == expected and marked
    assert "A2C" in fig.axes[0].get_title()


def test_checkpoint_choices_offer_given_then_bundled():
    assert demo.checkpoint_choices("default")[0] == "default"
    choices = demo.checkpoint_choices(["/models/a.pt", "default"])
    assert choices[:2] == ["/models/a.pt", "default"] and len(choices) == len(set(choices))


def test_request_dirs_are_fresh_and_old_ones_pruned(tmp_path, monkeypatch):
    first = demo.request_dir(tmp_path)
    second = demo.request_dir(tmp_path)
    assert first != second and first.is_dir() and second.is_dir()
    monkeypatch.setattr(demo, "KEEP_OUTPUTS_S", -1.0)
    third = demo.request_dir(tmp_path)
    assert not first.exists() and not second.exists() and third.is_dir()
