"""DICOM cine loops written with pydicom read back through read_clip: frames, fps, spacing, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from gdkvm.data.io import read_clip, read_image_spacing
from gdkvm.errors import InputError
from tests.data.dicom_factory import us_region, write_dicom

T, H, W = 5, 40, 56
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _gray() -> np.ndarray:
    """[T, H, W] uint8 with every value 0..255 present and a per-frame shift (frames are distinguishable)."""
    base = (np.arange(H * W).reshape(H, W) * 7) % 256
    return np.stack([(base + 11 * t) % 256 for t in range(T)]).astype(np.uint8)


def _smooth_rgb() -> np.ndarray:
    """[T, H, W, 3] uint8 smooth colour ramps (JPEG-friendly) that change from frame to frame."""
    rows, cols = np.meshgrid(np.linspace(0, 1, H), np.linspace(0, 1, W), indexing="ij")
    frames = []
    for t in range(T):
        shift = t / T
        frames.append(np.stack([rows * 200 + 30 * shift, cols * 180 + 40, (1 - rows) * 150 + 60 * shift], axis=-1))
    return np.rint(np.stack(frames)).astype(np.uint8)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return np.rint(rgb.astype(np.float32) @ LUMA).astype(np.int64)


def test_monochrome2_uncompressed_frame_time_and_region(tmp_path: Path) -> None:
    gray = _gray()
    region = us_region((4, 2, W - 5, H - 3), (0.031, 0.0255))  # x: cm per column, y: cm per row
    clip = read_clip(write_dicom(tmp_path / "mono.dcm", gray, frame_time=20.0, regions=[region]))
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (T, H, W)
    np.testing.assert_array_equal(clip.frames, gray)
    assert clip.fps == pytest.approx(50.0)
    assert clip.spacing == pytest.approx((0.255, 0.31))  # (row, col) mm
    assert read_image_spacing(tmp_path / "mono.dcm") == pytest.approx((0.255, 0.31))


def test_palette_colour_rle(tmp_path: Path) -> None:
    gray = _gray()
    ramp = np.arange(256, dtype=np.float64)
    palette = np.rint(np.stack([ramp * 257, (255 - ramp) * 257, np.full(256, 30000.0)], axis=1)).astype(np.uint16)
    path = write_dicom(
        tmp_path / "pal.dcm", gray, photometric="PALETTE COLOR", syntax="rle", palette=palette, cine_rate=25
    )
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    clip = read_clip(path)
    expected = np.rint((palette[gray].astype(np.float32) * (255.0 / 65535.0)) @ LUMA)
    assert clip.frames.shape == (T, H, W) and clip.frames.dtype == np.uint8
    assert np.abs(clip.frames.astype(np.int64) - expected).max() <= 1
    assert clip.fps == pytest.approx(25.0)
    assert clip.spacing is None


def test_ybr_full_422_jpeg_baseline(tmp_path: Path) -> None:
    rgb = _smooth_rgb()
    regions = [
        us_region((0, 0, W - 1, 14), (0.02, 0.5), spatial_format=2, units=(4, 3)),  # an M-mode strip: s x cm
        us_region((0, 15, W - 1, H - 1), (0.04, 0.03)),  # the 2D tissue sector
    ]
    path = write_dicom(
        tmp_path / "jpeg.dcm", rgb, photometric="YBR_FULL_422", syntax="jpeg", frame_time=33.3, regions=regions
    )
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    clip = read_clip(path)
    assert clip.frames.shape == (T, H, W) and clip.frames.dtype == np.uint8
    error = np.abs(clip.frames.astype(np.int64) - _luma(rgb))
    assert error.mean() < 1.5 and error.max() <= 8  # JPEG tolerance
    assert clip.fps == pytest.approx(1000.0 / 33.3)
    assert clip.spacing == pytest.approx((0.3, 0.4))


def test_jpeg_stream_labelled_rgb_and_monochrome_jpeg(tmp_path: Path) -> None:
    rgb = _smooth_rgb()
    # some encoders label YCbCr JPEG streams as RGB (dcm4che #565); the JPEG header says what the stream holds
    mislabelled = read_clip(write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB", syntax="jpeg"))
    assert np.abs(mislabelled.frames.astype(np.int64) - _luma(rgb)).max() <= 8
    gray = _luma(rgb).astype(np.uint8)
    mono = read_clip(write_dicom(tmp_path / "mono.dcm", gray, syntax="jpeg", frame_time=20.0))
    assert mono.frames.shape == (T, H, W) and mono.frames.dtype == np.uint8
    assert np.abs(mono.frames.astype(np.int64) - gray).max() <= 8


@pytest.mark.parametrize(("photometric", "syntax"), [("RGB", "raw"), ("YBR_FULL", "raw"), ("RGB", "rle")])
def test_colour_uncompressed_and_rle(tmp_path: Path, photometric: str, syntax: str) -> None:
    rgb = _smooth_rgb()
    clip = read_clip(write_dicom(tmp_path / "c.dcm", rgb, photometric=photometric, syntax=syntax, display_rate=30))
    assert np.abs(clip.frames.astype(np.int64) - _luma(rgb)).max() <= 1
    assert clip.fps == pytest.approx(30.0)


def test_fps_precedence_frame_time_over_cine_rate(tmp_path: Path) -> None:
    gray = _gray()
    assert read_clip(write_dicom(tmp_path / "a.dcm", gray, frame_time=40.0, cine_rate=30)).fps == pytest.approx(25.0)
    assert read_clip(write_dicom(tmp_path / "b.dcm", gray, cine_rate=30, display_rate=60)).fps == pytest.approx(30.0)
    assert read_clip(write_dicom(tmp_path / "c.dcm", gray, display_rate=60)).fps == pytest.approx(60.0)
    assert read_clip(write_dicom(tmp_path / "d.dcm", gray)).fps is None


def test_spacing_fallbacks(tmp_path: Path) -> None:
    gray = _gray()
    assert read_clip(write_dicom(tmp_path / "ps.dcm", gray, pixel_spacing=(0.2, 0.3))).spacing == pytest.approx(
        (0.2, 0.3)
    )
    # a region in seconds (not cm) is no spatial calibration: fall back to PixelSpacing, else unknown
    timed = [us_region((0, 0, W - 1, H - 1), (0.01, 0.02), units=(4, 4))]
    path = write_dicom(tmp_path / "t.dcm", gray, regions=timed, pixel_spacing=(0.5, 0.5))
    assert read_clip(path).spacing == pytest.approx((0.5, 0.5))
    assert read_clip(write_dicom(tmp_path / "none.dcm", gray, regions=timed)).spacing is None
    # the region wins over PixelSpacing; the largest of several 2D tissue regions is used
    regions = [us_region((0, 0, 9, 9), (0.1, 0.1)), us_region((0, 0, W - 1, H - 1), (0.02, 0.05))]
    both = write_dicom(tmp_path / "both.dcm", gray, regions=regions, pixel_spacing=(0.9, 0.9))
    assert read_clip(both).spacing == pytest.approx((0.5, 0.2))


def test_still_image_and_names_without_suffix(tmp_path: Path) -> None:
    gray = _gray()
    clip = read_clip(write_dicom(tmp_path / "IM0001", gray, multi=False))  # no extension: found by the DICM preamble
    assert clip.frames.shape == (1, H, W)
    np.testing.assert_array_equal(clip.frames[0], gray[0])
    one = read_clip(write_dicom(tmp_path / "one.dcm", _smooth_rgb(), photometric="RGB", multi=False))
    assert one.frames.shape == (1, H, W)
    bare = read_clip(write_dicom(tmp_path / "bare.dcm", gray, preamble=False))  # .dcm without preamble
    np.testing.assert_array_equal(bare.frames, gray)


def test_sixteen_bit_monochrome_is_scaled_float(tmp_path: Path) -> None:
    deep = (_gray().astype(np.uint16) * 257).astype(np.uint16)
    clip = read_clip(write_dicom(tmp_path / "deep.dcm", deep))
    assert clip.frames.dtype == np.float32
    np.testing.assert_allclose(clip.frames, _gray() / 255.0, atol=1e-6)


def test_bad_dicom_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nopix\.dcm: DICOM file has no pixel data"):
        read_clip(write_dicom(tmp_path / "nopix.dcm", _gray(), pixel_data=False))
    data = write_dicom(tmp_path / "full.dcm", _gray()).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 3000])
    with pytest.raises(InputError, match=r"cut\.dcm: (truncated|corrupt|cannot decode)"):
        read_clip(tmp_path / "cut.dcm")
    jpeg = write_dicom(tmp_path / "j.dcm", _smooth_rgb(), photometric="YBR_FULL_422", syntax="jpeg").read_bytes()
    (tmp_path / "jcut.dcm").write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(InputError, match=r"jcut\.dcm: (truncated|corrupt|cannot decode)"):
        read_clip(tmp_path / "jcut.dcm")
    (tmp_path / "fake.dcm").write_bytes(b"this is not dicom at all" * 10)
    with pytest.raises(InputError, match=r"fake\.dcm: "):
        read_clip(tmp_path / "fake.dcm")
    (tmp_path / "IM0002").write_bytes(b"\0" * 200)
    with pytest.raises(InputError, match=r"IM0002: unknown file type"):
        read_clip(tmp_path / "IM0002")


def test_jpeg_fast_path_matches_generic_decoder(tmp_path: Path) -> None:
    from gdkvm.data import dicom

    path = write_dicom(tmp_path / "j.dcm", _smooth_rgb(), photometric="YBR_FULL_422", syntax="jpeg")
    ds = pydicom.dcmread(path)
    fast = dicom._jpeg_baseline_gray(ds, path)
    assert fast is not None and fast.shape == (T, H, W)
    generic = dicom._to_gray_frames(*dicom._decode(ds, path), ds, path)
    assert np.abs(fast.astype(np.int64) - generic).max() <= 1
    # not applicable to other syntaxes: the generic decoder takes over
    assert dicom._jpeg_baseline_gray(pydicom.dcmread(write_dicom(tmp_path / "r.dcm", _gray())), path) is None


def test_damaged_jpeg_frames(tmp_path: Path) -> None:
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(write_dicom(tmp_path / "j.dcm", _smooth_rgb(), photometric="YBR_FULL_422", syntax="jpeg"))
    frames = list(generate_frames(ds.PixelData, number_of_frames=T))
    ds.PixelData = encapsulate(frames[:-1] + [frames[-1][: len(frames[-1]) // 3]])  # last frame cut short
    ds.save_as(tmp_path / "short.dcm")
    with pytest.raises(InputError, match=r"short\.dcm: cannot decode JPEG"):
        read_clip(tmp_path / "short.dcm")
    ds.PixelData = encapsulate(frames[:-1])  # one frame fewer than NumberOfFrames
    ds.save_as(tmp_path / "fewer.dcm")
    with pytest.raises(InputError, match=r"fewer\.dcm: .*(frame|cannot decode)"):
        read_clip(tmp_path / "fewer.dcm")


def test_monochrome1_is_inverted_and_frame_time_vector(tmp_path: Path) -> None:
    gray = _gray()
    ds = pydicom.dcmread(write_dicom(tmp_path / "m1.dcm", gray, photometric="MONOCHROME1"))
    ds.FrameTimeVector = [0.0] + [25.0] * (T - 1)
    ds.FrameIncrementPointer = 0x00181065
    ds.save_as(tmp_path / "m1.dcm")
    clip = read_clip(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(clip.frames, 255 - gray)
    assert clip.frames.dtype == np.uint8
    assert clip.fps == pytest.approx(40.0)


def test_unsupported_transfer_syntax_names_it(tmp_path: Path) -> None:
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(write_dicom(tmp_path / "raw.dcm", _gray()))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)] * T)  # a J2K start marker, then nothing valid
    ds["PixelData"].is_undefined_length = True
    ds.save_as(tmp_path / "j2k.dcm")
    with pytest.raises(InputError, match=r"j2k\.dcm: cannot decode JPEG 2000"):
        read_clip(tmp_path / "j2k.dcm")
