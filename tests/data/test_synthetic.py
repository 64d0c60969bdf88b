"""Synthetic echo generator: 3D truth, rendering, and the exact CAMUS file layouts (read back with SimpleITK)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from gdkvm.data.synthetic import HeartShape, make_clip, synth_camus, volume_fraction
from gdkvm.data.synthetic.geometry import random_heart
from gdkvm.errors import InputError

SMALL = {"height": (48, 64), "frames": (4, 8)}


def _voxel_volume_ml(heart: HeartShape, fraction: float, step: float = 0.4) -> float:
    """Independent numeric volume: count voxel centres inside the truncated ellipsoid (apex at z = 0)."""
    a, b, c = heart.semi_axes(fraction)
    xs = np.arange(-a, a + step, step)
    ys = np.arange(-b, b + step, step)
    zs = np.arange(0.0, 2 * c + step, step)
    x, y = np.meshgrid(xs, ys, indexing="ij")
    count = 0
    for z in zs:
        inside = (x / a) ** 2 + (y / b) ** 2 + ((z - c) / c) ** 2 <= 1.0
        count += int(inside.sum()) if z <= c * (1 + heart.f) else 0
    return count * step**3 / 1000.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_true_ef_matches_voxelised_volumes(seed: int) -> None:
    heart = random_heart(np.random.default_rng(seed))
    edv, esv = _voxel_volume_ml(heart, 1.0), _voxel_volume_ml(heart, heart.esv_ratio)
    assert edv == pytest.approx(heart.edv_ml, rel=0.01)
    assert esv == pytest.approx(heart.esv_ml, rel=0.01)
    assert 100 * (edv - esv) / edv == pytest.approx(heart.ef, abs=0.5)
    assert heart.a != pytest.approx(heart.b, rel=0.05)  # elliptical short axis


@pytest.mark.parametrize("theta_deg", [0.0, 60.0, 100.0])
def test_view_section_is_the_plane_cut_of_the_3d_shape(theta_deg: float) -> None:
    heart = random_heart(np.random.default_rng(11))
    fraction = 0.7
    a, b, c = heart.semi_axes(fraction)
    theta = math.radians(theta_deg)
    u, z = np.meshgrid(np.linspace(-40, 40, 161), np.linspace(-5, 2.2 * c, 200), indexing="ij")
    x, y = u * math.cos(theta), u * math.sin(theta)
    inside_3d = ((x / a) ** 2 + (y / b) ** 2 + ((z - c) / c) ** 2 <= 1.0) & (z <= c * (1 + heart.f))
    labels = heart.section(theta, fraction).labels(u, z)
    assert np.mean((labels == 1) != inside_3d) < 0.002  # only boundary round-off
    assert np.any(labels == 2) and np.any(labels == 3)  # the wall and the LA are cut by the plane too


def test_volume_fraction_cycle() -> None:
    phase = np.linspace(0.0, 2.0, 401)
    v = volume_fraction(phase, 0.35, 0.4)
    assert v.max() == pytest.approx(1.0) and v.min() == pytest.approx(0.4)
    assert volume_fraction(np.array([0.35, 1.35]), 0.35, 0.4) == pytest.approx([0.4, 0.4])
    assert np.all(np.diff(v[(phase > 0.01) & (phase < 0.34)]) < 0)  # systole empties, diastole fills
    assert np.all(np.diff(v[(phase > 0.36) & (phase < 0.99)]) > 0)


def test_make_clip_deterministic_and_masks_match_image() -> None:
    frames, masks, info = make_clip(5, size=(96, 112), frames=30, fps=50.0, ef=60.0)
    again, masks2, _ = make_clip(5, size=(96, 112), frames=30, fps=50.0, ef=60.0)
    assert frames.shape == masks.shape == (30, 96, 112) and frames.dtype == masks.dtype == np.uint8
    np.testing.assert_array_equal(frames, again)
    np.testing.assert_array_equal(masks, masks2)
    assert not np.array_equal(frames, make_clip(6, size=(96, 112), frames=30)[0])
    assert info["ef"] == pytest.approx(60.0) and set(np.unique(masks)) == {0, 1, 2, 3}
    cavity, wall = frames[masks == 1].mean(), frames[masks == 2].mean()
    assert cavity < 0.4 * wall
    area = (masks == 1).sum((1, 2)) * info["spacing"][0] * info["spacing"][1]
    np.testing.assert_allclose(area, info["lv_area_mm2"], rtol=0.08)
    for ed in info["ed_frames"]:
        for es in info["es_frames"]:
            assert area[ed] > area[es]


def _truth(root: Path) -> list[dict[str, str]]:
    with (root / "truth.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_camus_2023_layout_and_cfg(tmp_path: Path) -> None:
    root = synth_camus(tmp_path / "camus", patients=4, seed=3, reversed_fraction=0.5, **SMALL)
    names = sorted(p.name for p in (root / "database_nifti").iterdir())
    assert names == [f"patient{k:04d}" for k in range(1, 5)]
    suffixes = ["half_sequence", "half_sequence_gt", "ED", "ED_gt", "ES", "ES_gt"]
    expected = {f"patient0002_{v}_{s}.nii.gz" for v in ("2CH", "4CH") for s in suffixes}
    assert {p.name for p in (root / "database_nifti" / "patient0002").iterdir()} == expected | {
        "Info_2CH.cfg",
        "Info_4CH.cfg",
    }
    splits = {p.name: p.read_text().split() for p in (root / "database_split").iterdir()}
    assert sorted(splits) == [f"subgroup_{s}.txt" for s in ("testing", "training", "validation")]
    assert sorted(sum(splits.values(), [])) == names
    truth = _truth(root)
    assert any(r["stored_order"] == "ES->ED" for r in truth) and any(r["stored_order"] == "ED->ES" for r in truth)
    for row in truth:
        folder = root / "database_nifti" / row["patient"]
        lines = (folder / f"Info_{row['view']}.cfg").read_text().splitlines()
        cfg = dict(line.split(": ") for line in lines)
        assert list(cfg) == ["ED", "ES", "NbFrame", "Sex", "Age", "ImageQuality", "EF", "FrameRate"]
        stem = f"{row['patient']}_{row['view']}"
        seq = sitk.ReadImage(str(folder / f"{stem}_half_sequence.nii.gz"))
        gt = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{stem}_half_sequence_gt.nii.gz")))
        n = seq.GetSize()[2]
        assert int(cfg["NbFrame"]) == n and {int(cfg["ED"]), int(cfg["ES"])} == {1, n}
        assert (int(cfg["ED"]) == n) == (row["stored_order"] == "ES->ED")
        assert int(cfg["EF"]) == round(float(row["ef"]))
        assert seq.GetSpacing()[:2] == pytest.approx((float(row["spacing_col_mm"]), float(row["spacing_row_mm"])))
        lv = (gt == 1).sum((1, 2)) * seq.GetSpacing()[0] * seq.GetSpacing()[1]
        ed, es = int(cfg["ED"]) - 1, int(cfg["ES"]) - 1
        assert lv[ed] == pytest.approx(float(row["lv_area_ed_mm2"]), rel=0.1)
        assert lv[es] == pytest.approx(float(row["lv_area_es_mm2"]), rel=0.1)
        images = sitk.GetArrayFromImage(seq).astype(float)
        assert images[gt == 1].mean() < 0.5 * images[gt == 2].mean()  # dark cavity, bright wall, same pixels
        key = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{stem}_ED_gt.nii.gz")))
        np.testing.assert_array_equal(key, gt[ed])
        assert math.isclose(float(row["ef"]), 100 * (1 - float(row["esv_ml"]) / float(row["edv_ml"])), rel_tol=1e-3)


def test_camus_patient_independent_of_count(tmp_path: Path) -> None:
    a = synth_camus(tmp_path / "a", patients=2, seed=7, **SMALL)
    b = synth_camus(tmp_path / "b", patients=3, seed=7, **SMALL)
    rel = "database_nifti/patient0002/patient0002_4CH_half_sequence.nii.gz"
    arr_a = sitk.GetArrayFromImage(sitk.ReadImage(str(a / rel)))
    np.testing.assert_array_equal(arr_a, sitk.GetArrayFromImage(sitk.ReadImage(str(b / rel))))
    assert _truth(a) == _truth(b)[:4]
    c = synth_camus(tmp_path / "c", patients=2, seed=8, **SMALL)
    assert _truth(c) != _truth(a)


def test_overwrite_refused_and_other_files_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        synth_camus(out, patients=1, **SMALL)
    synth_camus(out, patients=1, overwrite=True, **SMALL)
    assert (out / "mine.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        synth_camus(tmp_path / "file", patients=1, **SMALL)


def test_camus_2019_layout(tmp_path: Path) -> None:
    root = synth_camus(tmp_path / "c19", patients=4, seed=1, release="2019", reversed_fraction=0.5, **SMALL)
    assert sorted(p.name for p in (root / "training").iterdir()) == ["patient0001", "patient0002", "patient0003"]
    assert sorted(p.name for p in (root / "testing").iterdir()) == ["patient0004"]
    train = {p.name for p in (root / "training" / "patient0001").iterdir()}
    stems = [f"patient0001_{v}_{s}" for v in ("2CH", "4CH") for s in ("sequence", "ED", "ED_gt", "ES", "ES_gt")]
    assert train == {f"{s}.{e}" for s in stems for e in ("mhd", "raw")} | {"Info_2CH.cfg", "Info_4CH.cfg"}
    test = {p.name for p in (root / "testing" / "patient0004").iterdir()}
    assert not any("_gt" in n for n in test) and "patient0004_4CH_sequence.mhd" in test
    cfg = dict(line.split(": ") for line in (root / "training/patient0001/Info_4CH.cfg").read_text().splitlines())
    assert list(cfg) == ["ED", "ES", "NbFrame", "Sex", "Age", "ImageQuality", "LVedv", "LVesv", "LVef"]
    truth = {(r["patient"], r["view"]): r for r in _truth(root)}
    row = truth["patient0001", "4CH"]
    assert float(cfg["LVef"]) == pytest.approx(float(row["ef"]), abs=0.01)
    assert float(cfg["LVedv"]) == pytest.approx(float(row["edv_ml"]), abs=0.01)
    image = sitk.ReadImage(str(root / "training/patient0001/patient0001_4CH_ES_gt.mhd"))
    spacing = image.GetSpacing()
    assert spacing[0] == pytest.approx(2 * spacing[1])  # anisotropic: columns twice as wide as rows
    seq = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "training/patient0001/patient0001_4CH_sequence.mhd")))
    es = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "training/patient0001/patient0001_4CH_ES.mhd")))
    np.testing.assert_array_equal(seq[int(cfg["ES"]) - 1], es)
    folds = sorted(p.name for p in (root / "listSubGroups").iterdir())
    assert len(folds) == 30 and "subGroup10_testing.txt" in folds
    assert (
        sum(len((root / "listSubGroups" / f"subGroup{g}_testing.txt").read_text().split()) for g in range(1, 11)) == 3
    )


def test_parallel_workers_write_the_same_files(tmp_path):
    serial = synth_camus(tmp_path / "serial", patients=3, seed=5, height=(64, 80), frames=(4, 6))
    parallel = synth_camus(tmp_path / "parallel", patients=3, seed=5, height=(64, 80), frames=(4, 6), workers=2)
    files = sorted(p.relative_to(serial) for p in serial.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(parallel) for p in parallel.rglob("*") if p.is_file())
    for rel in files:
        assert (serial / rel).read_bytes() == (parallel / rel).read_bytes(), rel
