"""overlay and label_contours on hand-computed cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gdkvm.data.io import read_clip, write_video
from gdkvm.errors import InputError
from gdkvm.viz import DEFAULT_COLOURS, label_contours, overlay


def _square_masks() -> np.ndarray:
    """[2, 7, 7]: frame 0 a 5x5 label-1 square with a label-2 centre pixel; frame 1 empty."""
    masks = np.zeros((2, 7, 7), dtype=np.int64)
    masks[0, 1:6, 1:6] = 1
    masks[0, 3, 3] = 2
    return masks


def test_label_contours_ring_and_thickness() -> None:
    masks = _square_masks()
    edges = label_contours(masks)
    ring = np.zeros((7, 7), dtype=bool)
    ring[1:6, 1:6] = True
    ring[2:5, 2:5] = False
    ring[2:5, 3] |= [True, False, True]  # neighbours of the label-2 pixel border a different label
    ring[3, 2:5] |= [True, False, True]
    ring[3, 3] = True  # the single label-2 pixel is its own boundary
    np.testing.assert_array_equal(edges[0], ring)
    assert not edges[1].any()
    square = (masks[:1] > 0).astype(np.int64)  # one 5x5 label-1 square
    assert label_contours(square)[0].sum() == 16
    thick = label_contours(square, thickness=2)[0]
    assert thick.sum() == 24 and not thick[3, 3]
    edge_touch = np.ones((1, 3, 3), dtype=np.int64)  # regions touching the image edge are outlined there
    assert label_contours(edge_touch)[0].sum() == 8
    with pytest.raises(InputError, match="thickness"):
        label_contours(masks, thickness=0)


def test_overlay_fill_contour_both() -> None:
    frames = np.full((2, 7, 7), 100, dtype=np.uint8)
    masks = _square_masks()
    red = np.array(DEFAULT_COLOURS[1], dtype=np.float64)
    fill = overlay(frames, masks, alpha=0.5, mode="fill")
    assert fill.shape == (2, 7, 7, 3) and fill.dtype == np.uint8
    np.testing.assert_array_equal(fill[0, 2, 2], np.rint(0.5 * 100 + 0.5 * red))
    np.testing.assert_array_equal(fill[0, 0, 0], [100, 100, 100])
    np.testing.assert_array_equal(fill[1], np.full((7, 7, 3), 100))
    contour = overlay(frames, masks, mode="contour")
    np.testing.assert_array_equal(contour[0, 1, 1], red)
    np.testing.assert_array_equal(contour[0, 2, 2], [100, 100, 100])  # inside, not on the boundary
    both = overlay(frames, masks, alpha=0.5, mode="both", colours={2: (0, 0, 255)})
    np.testing.assert_array_equal(both[0, 3, 3], [0, 0, 255])  # only label 2 has a colour
    np.testing.assert_array_equal(both[0, 1, 1], [100, 100, 100])


def test_overlay_accepts_rgb_and_float_frames() -> None:
    masks = _square_masks()
    rgb = np.zeros((2, 7, 7, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    out = overlay(rgb, masks, alpha=0.0, mode="fill")
    np.testing.assert_array_equal(out, rgb)
    floats = np.full((2, 7, 7), 0.5, dtype=np.float32)
    assert overlay(floats, masks, mode="fill")[0, 0, 0].tolist() == [128, 128, 128]


def test_overlay_bad_input() -> None:
    frames = np.zeros((2, 7, 7), dtype=np.uint8)
    with pytest.raises(InputError, match="do not match"):
        overlay(frames, np.zeros((2, 7, 6), dtype=np.int64))
    with pytest.raises(InputError, match="integer label ids"):
        overlay(frames, np.zeros((2, 7, 7), dtype=np.float32))
    with pytest.raises(InputError, match="mode"):
        overlay(frames, _square_masks(), mode="outline")
    with pytest.raises(InputError, match="alpha"):
        overlay(frames, _square_masks(), alpha=1.5)
    with pytest.raises(InputError, match="uint8"):
        overlay(frames.astype(np.int32), _square_masks())


def test_overlay_video_roundtrip(tmp_path: Path) -> None:
    frames = np.full((6, 32, 32), 60, dtype=np.uint8)
    masks = np.zeros((6, 32, 32), dtype=np.int64)
    masks[:, 8:24, 8:24] = 1
    path = write_video(tmp_path / "overlay.mp4", overlay(frames, masks, alpha=0.6, mode="fill"), 25)
    clip = read_clip(path)
    assert clip.frames.shape == (6, 32, 32)
    assert clip.frames[:, 16, 16].mean() > clip.frames[:, 2, 2].mean() + 20  # red tint is brighter than gray 60
