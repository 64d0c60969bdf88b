"""CamusDataset on tiny hand-written CAMUS folders (both releases, both stored frame orders, split files, bad input)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from gdkvm.data.camus import CamusDataset, find_layout
from gdkvm.data.sampling import resize_masks
from gdkvm.errors import InputError

H, W = 40, 48
SPACING = (0.3, 0.2)  # (row, col) mm


def _write(path: Path, array: np.ndarray, spacing: tuple[float, float] = SPACING) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((spacing[1], spacing[0], 1.0)[: image.GetDimension()])
    sitk.WriteImage(image, str(path))


def _sequence(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames whose intensity encodes the stored index (10 * t) and masks whose LV radius shrinks with t."""
    frames = np.zeros((n, H, W), dtype=np.uint8)
    masks = np.zeros((n, H, W), dtype=np.uint8)
    rr, cc = np.mgrid[:H, :W]
    for t in range(n):
        frames[t] = 10 * t + 5
        dist = np.hypot(rr - H / 2, cc - W / 2)
        masks[t][dist < 18] = 2
        masks[t][dist < 15 - t] = 1
        masks[t][:4] = 3
    return frames, masks


def _cfg(ed: int, es: int, nb: int, quality: str, ef: float, release: str) -> str:
    lines = [f"ED: {ed}", f"ES: {es}", f"NbFrame: {nb}", "Sex: F", "Age: 60", f"ImageQuality: {quality}"]
    lines += [f"EF: {ef}", "FrameRate: 50.0"] if release == "2023" else ["LVedv: 100", "LVesv: 40", f"LVef: {ef}"]
    return "\n".join(lines) + "\n"


def write_camus_2023(root: Path, n_frames: dict[str, int], reversed_: set[str], split: dict[str, list[str]]) -> Path:
    """CAMUS_public layout; patients in ``reversed_`` are stored ES->ED (ES == 1, ED == NbFrame)."""
    base = root / "CAMUS_public"
    for patient, n in n_frames.items():
        folder = base / "database_nifti" / patient
        folder.mkdir(parents=True)
        for view, quality in (("2CH", "Good"), ("4CH", "Poor")):
            frames, masks = _sequence(n)
            ed, es = (n, 1) if patient in reversed_ else (1, n)
            _write(folder / f"{patient}_{view}_half_sequence.nii.gz", frames)
            _write(folder / f"{patient}_{view}_half_sequence_gt.nii.gz", masks)
            (folder / f"Info_{view}.cfg").write_text(_cfg(ed, es, n, quality, 55.0, "2023"))
    (base / "database_split").mkdir()
    for name, patients in split.items():
        (base / "database_split" / f"subgroup_{name}.txt").write_text("".join(p + "\n" for p in patients))
    return base


def write_camus_2019(root: Path, n_frames: dict[str, int], testing: set[str]) -> None:
    """2019 MetaImage layout; ``testing`` patients go to testing/ without ground truth."""
    for patient, n in n_frames.items():
        folder = root / ("testing" if patient in testing else "training") / patient
        folder.mkdir(parents=True)
        for view in ("2CH", "4CH"):
            frames, masks = _sequence(n)
            _write(folder / f"{patient}_{view}_sequence.mhd", frames)
            for key, t in (("ED", 0), ("ES", n - 1)):
                _write(folder / f"{patient}_{view}_{key}.mhd", frames[t])
                if patient not in testing:
                    _write(folder / f"{patient}_{view}_{key}_gt.mhd", masks[t])
            (folder / f"Info_{view}.cfg").write_text(_cfg(1, n, n, "Medium", 60.0, "2019"))


@pytest.fixture
def camus_2023(tmp_path: Path) -> Path:
    split = {"training": ["patient0001", "patient0002"], "validation": ["patient0003"], "testing": ["patient0004"]}
    write_camus_2023(tmp_path, {"patient0001": 7, "patient0002": 12, "patient0003": 5, "patient0004": 6},
                     reversed_={"patient0002", "patient0003"}, split=split)  # fmt: skip
    return tmp_path


def test_layout_detection(camus_2023: Path, tmp_path: Path) -> None:
    assert find_layout(camus_2023) == ("2023", camus_2023 / "CAMUS_public")
    assert find_layout(camus_2023 / "CAMUS_public")[0] == "2023"


def test_split_files_and_views(camus_2023: Path) -> None:
    train = CamusDataset(camus_2023, split="train", num_frames=4, size=32)
    assert [c.patient for c in train.cases] == ["patient0001"] * 2 + ["patient0002"] * 2
    assert [c.view for c in train.cases] == ["2CH", "4CH"] * 2
    assert [c.patient for c in CamusDataset(camus_2023, split="val", size=32).cases] == ["patient0003"] * 2
    assert len(CamusDataset(camus_2023, split="test", views=("4CH",), size=32)) == 1
    assert len(CamusDataset(camus_2023, split="all", size=32)) == 8


def test_clip_sample_contract(camus_2023: Path) -> None:
    ds = CamusDataset(camus_2023, split="train", num_frames=4, size=32, labels=("lv", "myo", "la"))
    s = ds[0]
    assert s["frames"].shape == (4, 1, 32, 32) and s["frames"].dtype == torch.float32
    assert s["masks"].shape == (4, 32, 32) and s["masks"].dtype == torch.int64
    assert s["labelled"].dtype == torch.bool and bool(s["labelled"].all())
    assert 0.0 <= float(s["frames"].min()) and float(s["frames"].max()) <= 1.0
    np.testing.assert_allclose(s["spacing"].numpy(), [0.3 * H / 32, 0.2 * W / 32], rtol=1e-6)
    assert set(np.unique(s["masks"].numpy())) == {0, 1, 2, 3}
    meta = s["meta"]
    assert meta["id"] == "patient0001_2CH" and meta["image_quality"] == "Good" and meta["ef"] == 55.0
    assert (meta["ed_index"], meta["es_index"]) == (0, 3) and meta["stored_order"] == "ED->ES"
    assert (meta["orig_height"], meta["orig_width"], meta["fps"]) == (H, W, 50.0)
    assert ds[1]["meta"]["image_quality"] == "Poor"  # quality is per view


def test_uniform_sampling_and_masks_match(camus_2023: Path) -> None:
    ds = CamusDataset(camus_2023, split="train", num_frames=4, size=H, labels=("lv",))
    s = ds[0]  # 7 frames ED..ES stored in order -> stored indices 0, 2, 4, 6
    levels = (s["frames"][:, 0, 5, 5] * 255).round().long().tolist()
    assert levels == [5, 25, 45, 65]
    _, masks = _sequence(7)
    for k, t in enumerate([0, 2, 4, 6]):
        expected = (masks[t] == 1).astype(np.int64)[:, :]  # only lv kept, renumbered to 1
        resized = s["masks"][k].numpy()
        assert resized.shape == (H, H)
        assert abs(resized.sum() - expected.sum() * H / W) <= 0.1 * expected.sum() + 5


def test_es_to_ed_storage_comes_out_ed_first(camus_2023: Path) -> None:
    ds = CamusDataset(camus_2023, split="train", num_frames=12, size=32, mode="clip")
    s = ds[2]  # patient0002: 12 frames stored ES->ED (ED is stored frame 12)
    assert s["meta"]["stored_order"] == "ES->ED"
    assert (s["meta"]["ed_index"], s["meta"]["es_index"]) == (0, 11)
    levels = (s["frames"][:, 0, 5, 5] * 255).round().long().tolist()
    assert levels == [10 * t + 5 for t in range(11, -1, -1)]
    lv_area = s["masks"].flatten(1).sum(1).tolist()  # LV shrinks with stored index, so grows after reversal
    assert lv_area == sorted(lv_area)


def test_full_mode_and_repeats(camus_2023: Path) -> None:
    full = CamusDataset(camus_2023, split="val", mode="full", size=32)[0]
    assert full["frames"].shape[0] == 5 and (full["meta"]["ed_index"], full["meta"]["es_index"]) == (0, 4)
    clip = CamusDataset(camus_2023, split="val", num_frames=8, size=32)[0]
    levels = (clip["frames"][:, 0, 5, 5] * 255).round().long().tolist()
    assert levels == sorted(levels, reverse=True) and len(set(levels)) == 5  # all 5 frames, some repeated
    assert (clip["meta"]["ed_index"], clip["meta"]["es_index"]) == (0, 7)


def test_release_2019(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_camus_2019(tmp_path, {"patient0001": 6, "patient0002": 9, "patient0451": 5}, testing={"patient0451"})
    assert find_layout(tmp_path) == ("2019", tmp_path)
    ds = CamusDataset(tmp_path, split="train", num_frames=5, size=24)
    assert len(ds) == 4 and ds.release == "2019"
    s = ds[2]  # patient0002 2CH, 9 frames, only ED and ES labelled
    assert s["labelled"].tolist() == [True, False, False, False, True]
    assert int(s["masks"][1:4].abs().sum()) == 0 and int(s["masks"][0].sum()) > int(s["masks"][4].sum()) > 0
    assert s["meta"]["ef"] == 60.0 and s["meta"]["release"] == "2019" and np.isnan(s["meta"]["fps"])
    with caplog.at_level(logging.WARNING):
        everything = CamusDataset(tmp_path, split="all", size=24)
    assert len(everything) == 4 and "without ground truth" in caplog.text
    with pytest.raises(InputError, match="no CAMUS cases with ground truth"):
        CamusDataset(tmp_path, split="test", size=24)
    with pytest.raises(InputError, match="subgroup_validation"):
        CamusDataset(tmp_path, split="val", size=24)


def test_bad_input(tmp_path: Path, camus_2023: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        CamusDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        CamusDataset(tmp_path / "empty")
    (tmp_path / "other" / "stuff").mkdir(parents=True)
    with pytest.raises(InputError, match="expected database_nifti"):
        CamusDataset(tmp_path / "other")
    folder = camus_2023 / "CAMUS_public" / "database_nifti" / "patient0001"
    cfg = folder / "Info_2CH.cfg"
    cfg.write_text("ED: 1\nNbFrame: 7\n")
    with pytest.raises(InputError, match=r"Info_2CH.cfg: info file lacks the key\(s\) ES, ImageQuality"):
        CamusDataset(camus_2023)
    cfg.write_text(_cfg(1, 7, 7, "Good", 50, "2023"))
    (folder / "patient0001_4CH_half_sequence.nii.gz").write_bytes(b"not a nifti file")
    ds = CamusDataset(camus_2023)
    with pytest.raises(InputError, match="patient0001_4CH_half_sequence.nii.gz: cannot read the image"):
        ds[1]
    (folder / "patient0001_4CH_half_sequence_gt.nii.gz").unlink()
    with pytest.raises(InputError, match="missing file patient0001_4CH_half_sequence_gt.nii.gz"):
        CamusDataset(camus_2023)
    with pytest.raises(ValueError, match="unknown label"):
        CamusDataset(camus_2023, labels=("rv",))


# --- on the synthetic generator (gdkvm.data.synthetic), checked against its truth.csv ---------------------------


def _truth(root: Path) -> list[dict[str, str]]:
    import csv

    with (root / "truth.csv").open() as fh:
        return list(csv.DictReader(fh))


def _check_key_areas(sample: dict, row: dict[str, str], gt_path: Path, ed_pos: int, es_pos: int) -> None:
    """LV areas (mm^2) of the sample's ED/ES frames: equal to the ground-truth file's (within resizing error) and
    close to the generator's exact areas (within its rasterisation error at these small sizes)."""
    native_px = float(row["spacing_row_mm"]) * float(row["spacing_col_mm"])
    gt = sitk.GetArrayFromImage(sitk.ReadImage(str(gt_path)))
    if gt.ndim == 3 and gt.shape[0] > 1:  # a half sequence: pick the stored ED and ES frames
        gt = gt[[int(row["ed_frame"]) - 1, int(row["es_frame"]) - 1]]
    else:  # 2019: separate ED / ES files
        es = sitk.GetArrayFromImage(sitk.ReadImage(str(gt_path).replace("_ED_gt", "_ES_gt")))
        gt = np.stack([gt.reshape(es.shape), es])
    file_mm2 = (gt == 1).reshape(2, -1).sum(1) * native_px
    lv_mm2 = (sample["masks"] == 1).flatten(1).sum(1).double().numpy() * float(sample["spacing"].prod())
    np.testing.assert_allclose(lv_mm2[[ed_pos, es_pos]], file_mm2, rtol=0.06)
    exact = [float(row["lv_area_ed_mm2"]), float(row["lv_area_es_mm2"])]
    np.testing.assert_allclose(lv_mm2[[ed_pos, es_pos]], exact, rtol=0.3)
    assert lv_mm2[ed_pos] > lv_mm2[es_pos]


@pytest.fixture(scope="module")
def synth_2023(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gdkvm.data.synthetic import synth_camus

    out = tmp_path_factory.mktemp("synth") / "CAMUS_public"
    return synth_camus(out, patients=8, seed=3, height=(72, 112), frames=(6, 14), reversed_fraction=0.5)


def test_synthetic_2023_against_truth(synth_2023: Path) -> None:
    truth = {(r["patient"], r["view"]): r for r in _truth(synth_2023)}
    assert {r["stored_order"] for r in truth.values()} == {"ED->ES", "ES->ED"}  # both orders are exercised
    ds = CamusDataset(synth_2023, split="all", mode="full", size=96)
    assert len(ds) == len(truth) == 16
    for i, case in enumerate(ds.cases):
        row, s = truth[(case.patient, case.view)], ds[i]
        meta, n = s["meta"], int(row["nb_frame"])
        assert meta["stored_order"] == row["stored_order"] and meta["image_quality"] == row["quality"]
        assert (meta["ed_index"], meta["es_index"]) == (0, n - 1) and s["frames"].shape[0] == n
        assert meta["ef"] == round(float(row["ef"])) and meta["fps"] == pytest.approx(float(row["frame_rate"]), 0.01)
        assert (meta["orig_height"], meta["orig_width"]) == (int(row["height"]), int(row["width"]))
        expected_spacing = [float(row["spacing_row_mm"]) * int(row["height"]) / 96,
                            float(row["spacing_col_mm"]) * int(row["width"]) / 96]  # fmt: skip
        np.testing.assert_allclose(s["spacing"].numpy(), expected_spacing, rtol=1e-5)
        _check_key_areas(s, row, case.folder / f"{case.patient}_{case.view}_half_sequence_gt.nii.gz", 0, n - 1)
        assert bool(s["labelled"].all())


def test_synthetic_2023_masks_equal_files(synth_2023: Path) -> None:
    """At the native size (square crop aside) the loader's masks are the gt file's, reversed when stored ES->ED."""
    ds = CamusDataset(synth_2023, split="all", labels=("lv", "myo", "la"), mode="full", size=64)
    for i, case in enumerate(ds.cases[:6]):
        gt = sitk.GetArrayFromImage(
            sitk.ReadImage(str(case.folder / f"{case.patient}_{case.view}_half_sequence_gt.nii.gz"))
        )
        if case.es < case.ed:
            gt = gt[::-1]
        np.testing.assert_array_equal(ds[i]["masks"].numpy(), resize_masks(gt, 64))


def test_synthetic_2023_official_split(synth_2023: Path) -> None:
    truth = _truth(synth_2023)
    for split, name in (("train", "training"), ("val", "validation"), ("test", "testing")):
        expected = sorted({r["patient"] for r in truth if r["split"] == name})
        assert sorted({c.patient for c in CamusDataset(synth_2023, split=split, size=32).cases}) == expected


def test_synthetic_2019(tmp_path: Path) -> None:
    from gdkvm.data.synthetic import synth_camus

    root = synth_camus(tmp_path / "c19", patients=10, seed=1, release="2019", height=(112, 144), frames=(6, 10),
                       reversed_fraction=0.5)  # fmt: skip
    truth = {(r["patient"], r["view"]): r for r in _truth(root)}
    ds = CamusDataset(root, split="train", num_frames=4, size=96)
    assert {c.patient for c in ds.cases} == {p for (p, _), r in truth.items() if r["split"] != "testing"}
    for i, case in enumerate(ds.cases):
        row, s = truth[(case.patient, case.view)], ds[i]
        assert s["labelled"].tolist() == [True, False, False, True] and s["meta"]["stored_order"] == row["stored_order"]
        native = (float(row["spacing_row_mm"]), float(row["spacing_col_mm"]))
        assert native[1] == pytest.approx(2 * native[0], rel=1e-3)  # 2019: anisotropic pixels
        np.testing.assert_allclose(
            s["spacing"].numpy(), [native[0] * int(row["height"]) / 96, native[1] * int(row["width"]) / 96], rtol=1e-5
        )
        _check_key_areas(s, row, case.folder / f"{case.patient}_{case.view}_ED_gt.mhd", 0, 3)
    fold = CamusDataset(root, split="val", fold=2, size=32)
    listed = (root / "listSubGroups" / "subGroup2_validation.txt").read_text().split()
    assert sorted({c.patient for c in fold.cases}) == sorted(listed)


def test_decoded_cache(synth_2023: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import gdkvm.data.camus as camus

    plain = CamusDataset(synth_2023, split="val", num_frames=6, size=48)
    cached = CamusDataset(synth_2023, split="val", num_frames=6, size=48, cache_dir=tmp_path / "cache")
    first = [cached[i] for i in range(len(cached))]  # builds the entries
    assert len(list((tmp_path / "cache").glob("*.npz"))) == len(cached) and not list((tmp_path / "cache").glob(".*"))
    for a, b in zip([plain[i] for i in range(len(plain))], first):
        assert torch.equal(a["masks"], b["masks"]) and torch.equal(a["labelled"], b["labelled"])
        assert float((a["frames"] - b["frames"]).abs().max()) <= 0.5 / 255 + 1e-6  # uint8 rounding only
        assert torch.equal(a["spacing"], b["spacing"]) and a["meta"] == b["meta"]

    def no_decoding(case: object) -> None:
        raise RuntimeError("decoded again")

    monkeypatch.setattr(camus, "load_case", no_decoding)
    for i in range(len(cached)):  # served from the cache
        assert torch.equal(cached[i]["frames"], first[i]["frames"])
    case = cached.cases[0]
    source = case.folder / f"{case.patient}_{case.view}_half_sequence.nii.gz"
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a changed source rebuilds its entry
    with pytest.raises(RuntimeError, match="decoded again"):
        cached[0]
