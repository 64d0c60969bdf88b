"""read_clip for videos and NIfTI/MetaImage, write_video, and the bad-input errors."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from gdkvm.data.io import Clip, read_clip, read_image_spacing, read_volume_spacing, write_video
from gdkvm.errors import InputError


def _moving_square(t: int, h: int, w: int) -> np.ndarray:
    """[T, H, W] uint8: dark background, a bright square that moves one step right per frame."""
    frames = np.full((t, h, w), 20, dtype=np.uint8)
    for i in range(t):
        frames[i, h // 4 : h // 2, 2 + 2 * i : 2 + 2 * i + w // 4] = 220
    return frames


def _write_mjpg_avi(path: Path, frames: np.ndarray, fps: float) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames.shape[2], frames.shape[1]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(np.repeat(frame[..., None], 3, axis=-1))
    writer.release()
    return path


def test_avi_mjpg_roundtrip(tmp_path: Path) -> None:
    frames = _moving_square(12, 112, 112)
    clip = read_clip(_write_mjpg_avi(tmp_path / "a.avi", frames, 50.0))
    assert isinstance(clip, Clip)
    assert clip.frames.shape == (12, 112, 112) and clip.frames.dtype == np.uint8
    assert clip.fps == pytest.approx(50.0)
    assert clip.spacing is None and clip.path == tmp_path / "a.avi"
    assert read_image_spacing(tmp_path / "a.avi") is None
    assert np.abs(clip.frames.astype(int) - frames).mean() < 3.0  # MJPG is lossy
    # the moving square is where it should be in every frame
    assert np.argmax(clip.frames[:, 40, :] > 120, axis=1).tolist() == [2 + 2 * i for i in range(12)]


def test_colour_video_becomes_gray(tmp_path: Path) -> None:
    rgb = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # pure red -> BT.601 luma ~ 0.299 * 200 = 60
    path = tmp_path / "red.mp4"
    write_video(path, rgb, 10)
    clip = read_clip(path)
    assert clip.frames.ndim == 3
    assert abs(float(clip.frames.mean()) - 0.299 * 200) < 6


@pytest.mark.parametrize(("h", "w", "fps"), [(64, 80, 50.0), (63, 81, 50.9), (7, 9, 25.0)], ids=["even", "odd", "tiny"])
def test_write_video_h264_roundtrip(tmp_path: Path, h: int, w: int, fps: float) -> None:
    frames = _moving_square(17, h, w)
    path = write_video(tmp_path / "sub" / "out.mp4", frames, fps)
    assert path == tmp_path / "sub" / "out.mp4"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.mp4"]  # no temp file left behind
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.format.name == "yuv420p"
        assert (stream.width, stream.height) == (w + w % 2, h + h % 2)
    data = path.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # +faststart: index before the media data
    clip = read_clip(path)
    assert clip.frames.shape == (17, h + h % 2, w + w % 2)
    assert clip.fps == pytest.approx(fps, rel=1e-3)
    assert np.abs(clip.frames[:, :h, :w].astype(int) - frames).mean() < 4.0


def test_write_video_replaces_atomically_and_rejects_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    path.write_bytes(b"old")
    with pytest.raises(InputError, match="uint8"):
        write_video(path, np.zeros((2, 8, 8), dtype=np.float32), 10)
    with pytest.raises(InputError, match="fps"):
        write_video(path, np.zeros((2, 8, 8), dtype=np.uint8), 0)
    with pytest.raises(InputError, match=r"\[T, H, W\]"):
        write_video(path, np.zeros((8, 8), dtype=np.uint8), 10)
    with pytest.raises(InputError, match="at least one frame"):
        write_video(path, np.zeros((0, 8, 8), dtype=np.uint8), 10)
    assert path.read_bytes() == b"old"  # failed writes never touch the target
    write_video(path, np.zeros((2, 8, 8), dtype=np.uint8), 10)
    assert read_clip(path).frames.shape == (2, 8, 8)
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]
    reference = tmp_path / "reference.txt"
    reference.write_text("x")  # created with the process umask, as a plain open() would
    assert path.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777


def _itk_sequence(frames: np.ndarray, spacing_xy: tuple[float, float]) -> sitk.Image:
    image = sitk.GetImageFromArray(frames)  # [T, H, W] -> size (W, H, T)
    image.SetSpacing((spacing_xy[0], spacing_xy[1], 1.0))
    return image


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mhd"])
def test_itk_sequence_axis_order_and_spacing(tmp_path: Path, suffix: str) -> None:
    frames = _moving_square(5, 30, 44)  # H != W so a transposed read would fail
    path = tmp_path / f"seq{suffix}"
    sitk.WriteImage(_itk_sequence(frames, (0.31, 0.154)), str(path))  # x = column, y = row
    clip = read_clip(path)
    assert clip.frames.shape == (5, 30, 44) and clip.frames.dtype == np.uint8
    np.testing.assert_array_equal(clip.frames, frames)
    assert clip.spacing == pytest.approx((0.154, 0.31))  # (row, col)
    assert read_image_spacing(path) == pytest.approx((0.154, 0.31))
    assert read_volume_spacing(path) == pytest.approx((0.154, 0.31))
    assert clip.fps is None


def test_itk_2d_image_is_one_frame_and_floats_are_scaled(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(np.arange(12, dtype=np.float32).reshape(3, 4) * 100.0)
    image.SetSpacing((0.5, 0.25))
    sitk.WriteImage(image, str(tmp_path / "still.nii.gz"))
    clip = read_clip(tmp_path / "still.nii.gz")
    assert clip.frames.shape == (1, 3, 4) and clip.frames.dtype == np.float32
    assert clip.frames.min() == 0.0 and clip.frames.max() == 1.0
    assert clip.spacing == pytest.approx((0.25, 0.5))


def test_camus_frame_rate_from_info_cfg(tmp_path: Path) -> None:
    folder = tmp_path / "patient0007"
    folder.mkdir()
    sitk.WriteImage(
        _itk_sequence(_moving_square(4, 20, 24), (0.3, 0.3)), str(folder / "patient0007_4CH_half_sequence.nii.gz")
    )
    (folder / "Info_4CH.cfg").write_text("ED: 1\nES: 4\nNbFrame: 4\nFrameRate: 48.4\n")
    assert read_clip(folder / "patient0007_4CH_half_sequence.nii.gz").fps == pytest.approx(48.4)


def test_itk_wrong_dimensionality(tmp_path: Path) -> None:
    volume = sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), dtype=np.uint8), isVector=False)  # a 4D x-y-z-t volume
    sitk.WriteImage(volume, str(tmp_path / "vol4d.nii.gz"))
    with pytest.raises(InputError, match=r"vol4d\.nii\.gz: expected a 2D image or a 2D\+time .* 4D image"):
        read_clip(tmp_path / "vol4d.nii.gz")
    squeezable = sitk.GetImageFromArray(np.ones((3, 1, 4, 5), dtype=np.uint8), isVector=False)  # (x, y, 1, t)
    sitk.WriteImage(squeezable, str(tmp_path / "xy1t.nii.gz"))
    assert read_clip(tmp_path / "xy1t.nii.gz").frames.shape == (3, 4, 5)
    vectors = sitk.GetImageFromArray(np.zeros((3, 4, 5, 2), dtype=np.uint8), isVector=True)
    sitk.WriteImage(vectors, str(tmp_path / "vec.nii.gz"))
    with pytest.raises(InputError, match=r"vec\.nii\.gz: images with 2 components"):
        read_clip(tmp_path / "vec.nii.gz")


def test_missing_empty_unknown_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nothere\.avi: no such file"):
        read_clip(tmp_path / "nothere.avi")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.mp4: file is empty"):
        read_clip(tmp_path / "empty.mp4")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"notes\.txt: unknown file type '\.txt'"):
        read_clip(tmp_path / "notes.txt")
    (tmp_path / "junk.avi").write_bytes(b"RIFF" + bytes(range(256)) * 8)
    with pytest.raises(InputError, match=r"junk\.avi: .*(not a readable video|corrupt|zero frames)"):
        read_clip(tmp_path / "junk.avi")
    (tmp_path / "junk.nii.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 20)
    with pytest.raises(InputError, match=r"junk\.nii\.gz: cannot read the image"):
        read_clip(tmp_path / "junk.nii.gz")
    with pytest.raises(InputError, match="is not a file"):
        read_clip(tmp_path)


@pytest.mark.parametrize("cut", [0.5, 0.9], ids=["half", "tail"])
def test_truncated_avi(tmp_path: Path, cut: float) -> None:
    data = _write_mjpg_avi(tmp_path / "full.avi", _moving_square(20, 64, 64), 50.0).read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(InputError, match=r"cut\.avi: .*(truncated|corrupt)"):
        read_clip(tmp_path / "cut.avi")


def test_zero_frame_video(tmp_path: Path) -> None:
    path = _write_mjpg_avi(tmp_path / "zero.avi", np.zeros((0, 16, 16), dtype=np.uint8), 50.0)
    assert path.stat().st_size > 0
    with pytest.raises(InputError, match=r"zero\.avi: video has zero frames"):
        read_clip(path)


def test_write_video_failure_leaves_target_and_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gdkvm.data import video

    path = tmp_path / "keep.mp4"
    write_video(path, _moving_square(3, 16, 16), 10)
    before = path.read_bytes()

    def _crash(target: Path, *args: object) -> None:
        target.write_bytes(b"partial")
        raise RuntimeError("encoder died")

    monkeypatch.setattr(video, "_encode", _crash)
    with pytest.raises(RuntimeError, match="encoder died"):
        write_video(path, _moving_square(3, 16, 16), 10)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_chromium_plays_write_video_output(tmp_path: Path) -> None:
    """Chromium's <video> decodes the mp4: size, duration, and the pixels of a frame drawn to a canvas."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("needs Debian chromium at /usr/bin/chromium")
    frames = np.full((30, 64, 96), 30, dtype=np.uint8)
    frames[:, 16:48, 48:] = 220  # right half of the middle band bright
    write_video(tmp_path / "v.mp4", frames, 25)
    (tmp_path / "index.html").write_text('<video id="v" src="v.mp4" muted></video><canvas id="c"></canvas>')
    script = """() => new Promise((resolve) => {
      const v = document.getElementById("v");
      const report = () => {
        const c = document.getElementById("c");
        c.width = v.videoWidth; c.height = v.videoHeight;
        const ctx = c.getContext("2d");
        ctx.drawImage(v, 0, 0);
        resolve({w: v.videoWidth, h: v.videoHeight, d: v.duration, err: v.error && v.error.code,
                 dark: ctx.getImageData(10, 32, 1, 1).data[0], bright: ctx.getImageData(80, 32, 1, 1).data[0]});
      };
      v.addEventListener("seeked", report, {once: true});
      v.addEventListener("error", report, {once: true});
      setTimeout(() => resolve({err: "timeout", state: v.readyState}), 20000);
      if (v.readyState >= 2) { v.currentTime = 0.5; }
      else { v.addEventListener("loadeddata", () => { v.currentTime = 0.5; }, {once: true}); }
    })"""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=["--no-sandbox", "--allow-file-access-from-files"]
        )
        try:
            page = browser.new_page()
            page.goto((tmp_path / "index.html").as_uri())
            result = page.evaluate(script)
        finally:
            browser.close()
    assert result["err"] is None
    assert (result["w"], result["h"]) == (96, 64)
    assert result["d"] == pytest.approx(30 / 25, abs=0.05)
    assert abs(result["dark"] - 30) < 12 and abs(result["bright"] - 220) < 12
