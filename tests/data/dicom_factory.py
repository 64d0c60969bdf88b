"""Test helper: write small ultrasound DICOM files with pydicom (uncompressed, RLE Lossless, JPEG Baseline)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

SYNTAXES = {"raw": ExplicitVRLittleEndian, "rle": RLELossless, "jpeg": JPEGBaseline8Bit}


def us_region(
    box: tuple[int, int, int, int],
    delta_cm: tuple[float, float],
    *,
    spatial_format: int = 1,
    data_type: int = 1,
    units: tuple[int, int] = (3, 3),
) -> Dataset:
    """One item of SequenceOfUltrasoundRegions.

    Args:
        box: (min x, min y, max x, max y) in pixels.
        delta_cm: (PhysicalDeltaX, PhysicalDeltaY): column and row pixel size in the given units.
        spatial_format: RegionSpatialFormat (1 = 2D, 2 = M-mode, 3 = spectral).
        data_type: RegionDataType (1 = tissue, 3 = PW spectral Doppler, ...).
        units: (PhysicalUnitsXDirection, PhysicalUnitsYDirection), 3 = cm, 4 = seconds.
    """
    item = Dataset()
    item.RegionSpatialFormat = spatial_format
    item.RegionDataType = data_type
    item.RegionFlags = 0
    item.RegionLocationMinX0, item.RegionLocationMinY0, item.RegionLocationMaxX1, item.RegionLocationMaxY1 = box
    item.PhysicalUnitsXDirection, item.PhysicalUnitsYDirection = units
    item.PhysicalDeltaX, item.PhysicalDeltaY = (float(delta_cm[0]), float(delta_cm[1]))
    item.ReferencePixelX0 = (box[0] + box[2]) // 2
    item.ReferencePixelY0 = box[1]
    return item


def _base(pixels: np.ndarray, photometric: str, syntax: str, multi: bool) -> Dataset:
    meta = FileMetaDataset()
    sop_class = UltrasoundMultiFrameImageStorage if multi else UltrasoundImageStorage
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = SYNTAXES[syntax]
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PatientID = "SYNTH"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    colour = pixels.ndim == 4
    ds.Rows, ds.Columns = pixels.shape[1:3]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16 if pixels.dtype == np.uint16 else 8
    ds.BitsStored = ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if multi:
        ds.NumberOfFrames = pixels.shape[0]
    return ds


def _jpeg_frames(frames: np.ndarray, quality: int) -> list[bytes]:
    """Encode ``[T, H, W, 3]`` uint8 RGB frames (YCbCr 4:2:2) or ``[T, H, W]`` gray frames as baseline JPEG."""
    out = []
    for frame in frames:
        buf = io.BytesIO()
        if frame.ndim == 3:
            Image.fromarray(frame, mode="RGB").save(buf, format="JPEG", quality=quality, subsampling=1)
        else:
            Image.fromarray(frame, mode="L").save(buf, format="JPEG", quality=quality)
        out.append(buf.getvalue())
    return out


def write_dicom(
    path: str | Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    syntax: str = "raw",
    frame_time: float | None = None,
    cine_rate: float | None = None,
    display_rate: float | None = None,
    regions: Sequence[Dataset] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    palette: np.ndarray | None = None,
    multi: bool = True,
    pixel_data: bool = True,
    preamble: bool = True,
    jpeg_quality: int = 95,
) -> Path:
    """Write an ultrasound DICOM file.

    Args:
        path: target file.
        pixels: ``[T, H, W]`` uint8/uint16 (MONOCHROME2, or palette indices) or ``[T, H, W, 3]`` uint8 RGB. For
            ``YBR_FULL`` raw data the RGB input is converted; for ``YBR_FULL_422`` + jpeg, Pillow does it.
        photometric: MONOCHROME2, RGB, YBR_FULL, YBR_FULL_422 or PALETTE COLOR.
        syntax: "raw" (explicit VR little endian), "rle" (RLE Lossless) or "jpeg" (JPEG Baseline, RGB or gray input).
        frame_time: FrameTime in ms. cine_rate: CineRate. display_rate: RecommendedDisplayFrameRate.
        regions: SequenceOfUltrasoundRegions items (see :func:`us_region`).
        pixel_spacing: PixelSpacing (row, col) in mm.
        palette: ``[N, 3]`` uint16 LUT (16-bit entries) for PALETTE COLOR.
        multi: write a multi-frame object (NumberOfFrames); False writes the first frame as a still image.
        pixel_data: False omits PixelData (a header-only object).
        preamble: False writes without the 128-byte preamble and DICM prefix.
        jpeg_quality: Pillow JPEG quality.
    """
    pixels = np.asarray(pixels)
    if not multi:
        pixels = pixels[:1]
    ds = _base(pixels, photometric, syntax, multi)
    if frame_time is not None:
        ds.FrameTime = frame_time
        ds.FrameIncrementPointer = 0x00181063
    if cine_rate is not None:
        ds.CineRate = int(round(cine_rate))
    if display_rate is not None:
        ds.RecommendedDisplayFrameRate = int(round(display_rate))
    if regions is not None:
        ds.SequenceOfUltrasoundRegions = list(regions)
    if pixel_spacing is not None:
        ds.PixelSpacing = [float(pixel_spacing[0]), float(pixel_spacing[1])]
    if palette is not None:
        n = len(palette)
        for colour, channel in zip(("Red", "Green", "Blue"), palette.T):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [n % 65536, 0, 16])
            setattr(ds, f"{colour}PaletteColorLookupTableData", channel.astype("<u2").tobytes())
    if pixel_data:
        _set_pixels(ds, pixels if multi else pixels[0], photometric, syntax, jpeg_quality)
    path = Path(path)
    ds.save_as(path, enforce_file_format=preamble)
    return path


def _set_pixels(ds: Dataset, pixels: np.ndarray, photometric: str, syntax: str, jpeg_quality: int) -> None:
    if syntax == "jpeg":
        colour = int(ds.SamplesPerPixel) == 3
        frames = pixels if pixels.ndim == (4 if colour else 3) else pixels[None]
        ds.PixelData = encapsulate(_jpeg_frames(frames, jpeg_quality))
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.LossyImageCompression = "01"
        return
    if photometric == "YBR_FULL":
        pixels = convert_color_space(pixels, "RGB", "YBR_FULL")
    if syntax == "rle":
        ds.compress(RLELossless, np.ascontiguousarray(pixels), encoding_plugin="pydicom")
        return
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds["PixelData"].VR = "OW" if pixels.dtype == np.uint16 else "OB"
