"""Write a synthetic CAMUS data set in the 2023 NIfTI (``CAMUS_public``) or 2019 MetaImage layout.

2023 (``out`` plays the role of ``CAMUS_public/``)::

    database_nifti/patientNNNN/patientNNNN_{2CH,4CH}_{half_sequence,ED,ES}[_gt].nii.gz, Info_{2CH,4CH}.cfg
    database_split/subgroup_{training,validation,testing}.txt

2019::

    training/patientNNNN/patientNNNN_{2CH,4CH}_{ED,ES}[_gt].mhd (+ .raw), ..._sequence.mhd (no labels), Info_*.cfg
    testing/patientNNNN/ (same, without ground truth and without LVedv/LVesv/LVef)
    listSubGroups/subGroup{1..10}_{training,validation,testing}.txt (10 folds over the training patients)

Plus ``truth.csv`` at the root (not part of the real format): true 3D EDV/ESV/EF and, per view, the stored frame
order, 1-based ED/ES frames, frame rate, spacing and exact 2D LV areas. Each half sequence covers one systole
(ED -> ES, both exact instants); about a quarter are stored reversed (``ES: 1``, ``ED: NbFrame`` in the cfg), as in the
real release, so that reading them backwards gives ED..ES in time order.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from gdkvm.data.synthetic.clip import QUALITIES, VIEWS, random_cycle, random_scan, view_angles
from gdkvm.data.synthetic.files import fmt, prepare_output, split_of, write_csv
from gdkvm.data.synthetic.geometry import HeartShape, random_heart, volume_fraction
from gdkvm.data.synthetic.render import render_view

logger = logging.getLogger(__name__)

RELEASES = ("2019", "2023")
SPLIT_NAMES = ("training", "validation", "testing")
TRUTH_COLUMNS = (
    "patient", "view", "split", "edv_ml", "esv_ml", "ef", "heart_rate", "nb_frame", "frame_rate", "stored_order",
    "ed_frame", "es_frame", "height", "width", "spacing_row_mm", "spacing_col_mm", "quality",
    "lv_area_ed_mm2", "lv_area_es_mm2",
)  # fmt: skip


@dataclass
class ViewCase:
    """One rendered view of a patient, frames in stored order.

    Attributes:
        images: [T, H, W] uint8 stored frames.
        masks: [T, H, W] uint8 labels of the stored frames.
        ed: 1-based ED frame in stored order.
        es: 1-based ES frame in stored order.
        frame_rate: frames per second.
        spacing: (row, col) mm.
        quality: "Good", "Medium" or "Poor".
        areas: exact LV areas (mm^2) at (ED, ES).
    """

    images: np.ndarray
    masks: np.ndarray
    ed: int
    es: int
    frame_rate: float
    spacing: tuple[float, float]
    quality: str
    areas: tuple[float, float]


def _draw_view(
    rng: np.random.Generator, heart: HeartShape, es_phase: float, period: float, theta: float, *,
    view: str, size: tuple[int, int], frames: tuple[int, int], col_row_ratio: float, reversed_fraction: float,
) -> ViewCase:  # fmt: skip
    quality = str(rng.choice(QUALITIES, p=[0.35, 0.45, 0.2]))
    fps = float(rng.uniform(35.0, 60.0))  # acquisition rate; the frame count follows from the systole length
    n = int(np.clip(round(es_phase * period * fps) + 1, frames[0], frames[1]))
    stored_reversed = bool(rng.random() < reversed_fraction)
    scan = random_scan(
        rng, heart, height=size[0], width=size[1], theta=theta, quality=quality,
        col_row_ratio=col_row_ratio, right_heart=view == "4CH",
    )  # fmt: skip
    fractions = volume_fraction(es_phase * np.arange(n) / (n - 1), es_phase, heart.esv_ratio)
    images, masks = render_view(rng, heart, scan, fractions)
    areas = (heart.section(theta, 1.0).lv_area(), heart.section(theta, heart.esv_ratio).lv_area())
    ed, es = (n, 1) if stored_reversed else (1, n)
    if stored_reversed:
        images, masks = images[::-1].copy(), masks[::-1].copy()
    rate = (n - 1) / (es_phase * period)
    return ViewCase(images, masks, ed, es, rate, scan.spacing, quality, areas)


def _image(array: np.ndarray, spacing: tuple[float, float]) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing((spacing[1], spacing[0], 1.0)[: image.GetDimension()])
    return image


def _cfg(case: ViewCase, sex: str, age: int, heart: HeartShape, release: str, labelled: bool) -> str:
    n = case.images.shape[0]
    lines = [f"ED: {case.ed}", f"ES: {case.es}", f"NbFrame: {n}", f"Sex: {sex}", f"Age: {age}"]
    lines.append(f"ImageQuality: {case.quality}")
    if release == "2023":
        lines += [f"EF: {round(heart.ef)}", f"FrameRate: {case.frame_rate:.1f}"]
    elif labelled:
        lines += [f"LVedv: {heart.edv_ml:.2f}", f"LVesv: {heart.esv_ml:.2f}", f"LVef: {heart.ef:.2f}"]
    return "\n".join(lines) + "\n"


def _save(image: sitk.Image, path: str) -> None:
    """Write with fast gzip (level 1) for .nii.gz; MetaImage stays uncompressed (.raw) as in the 2019 release."""
    gz = path.endswith(".gz")
    sitk.WriteImage(image, path, useCompression=gz, compressionLevel=1 if gz else -1)


def _write_view(folder: Path, name: str, view: str, case: ViewCase, release: str, labelled: bool) -> None:
    ext, seq = (".nii.gz", "half_sequence") if release == "2023" else (".mhd", "sequence")
    stem = folder / f"{name}_{view}"
    _save(_image(case.images, case.spacing), f"{stem}_{seq}{ext}")
    if release == "2023":
        _save(_image(case.masks, case.spacing), f"{stem}_{seq}_gt{ext}")
    for key, frame in (("ED", case.ed), ("ES", case.es)):
        _save(_image(case.images[frame - 1], case.spacing), f"{stem}_{key}{ext}")
        if labelled:
            _save(_image(case.masks[frame - 1], case.spacing), f"{stem}_{key}_gt{ext}")


def _patient(
    root: Path, index: int, seed: int, release: str, split: str, *,
    height: tuple[int, int], frames: tuple[int, int], reversed_fraction: float,
) -> list[dict[str, str]]:  # fmt: skip
    rng = np.random.default_rng((seed, index, 1))
    name = f"patient{index:04d}"
    heart, cycle, angles = random_heart(rng), random_cycle(rng), view_angles(rng)
    sex, age = str(rng.choice(["F", "M"])), int(rng.integers(20, 90))
    h = int(rng.integers(height[0], height[1] + 1))
    ratio = 1.0 if release == "2023" else 2.0  # 2019: columns twice as wide as rows (anisotropic pixels)
    size = (h, max(16, round(h * float(rng.uniform(1.1, 1.25)) / ratio)))
    labelled = release == "2023" or split != "testing"
    if release == "2023":
        folder = root / "database_nifti" / name
    else:
        folder = root / ("testing" if split == "testing" else "training") / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for view in VIEWS:
        case = _draw_view(
            rng, heart, cycle.es_phase, cycle.period, angles[view], view=view, size=size, frames=frames,
            col_row_ratio=ratio, reversed_fraction=reversed_fraction,
        )  # fmt: skip
        _write_view(folder, name, view, case, release, labelled)
        (folder / f"Info_{view}.cfg").write_text(_cfg(case, sex, age, heart, release, labelled))
        rows.append(_truth_row(name, view, split, heart, cycle.heart_rate, case))
    return rows


def _truth_row(name: str, view: str, split: str, heart: HeartShape, hr: float, case: ViewCase) -> dict[str, str]:
    n, h, w = case.images.shape
    return {
        "patient": name, "view": view, "split": split, "edv_ml": fmt(heart.edv_ml), "esv_ml": fmt(heart.esv_ml),
        "ef": fmt(heart.ef), "heart_rate": fmt(hr, 2), "nb_frame": str(n), "frame_rate": fmt(case.frame_rate),
        "stored_order": "ES->ED" if case.ed > case.es else "ED->ES", "ed_frame": str(case.ed),
        "es_frame": str(case.es), "height": str(h), "width": str(w), "spacing_row_mm": fmt(case.spacing[0], 6),
        "spacing_col_mm": fmt(case.spacing[1], 6), "quality": case.quality,
        "lv_area_ed_mm2": fmt(case.areas[0], 3), "lv_area_es_mm2": fmt(case.areas[1], 3),
    }  # fmt: skip


def _write_splits(root: Path, release: str, splits: dict[str, str]) -> None:
    if release == "2023":
        folder = root / "database_split"
        folder.mkdir(exist_ok=True)
        for part in SPLIT_NAMES:
            names = [p for p, s in splits.items() if s == part]
            (folder / f"subgroup_{part}.txt").write_text("".join(f"{p}\n" for p in names))
        return
    folder = root / "listSubGroups"
    folder.mkdir(exist_ok=True)
    training = [p for p, s in splits.items() if s != "testing"]
    groups = [[p for j, p in enumerate(training) if j % 10 == g] for g in range(10)]
    for g in range(10):
        parts = {"testing": groups[g], "validation": groups[(g + 1) % 10]}
        parts["training"] = [p for p in training if p not in parts["testing"] and p not in parts["validation"]]
        for part, names in parts.items():
            (folder / f"subGroup{g + 1}_{part}.txt").write_text("".join(f"{p}\n" for p in names))


def _patient_rows(
    root: Path,
    seed: int,
    release: str,
    splits: dict[str, str],
    height: tuple[int, int],
    frames: tuple[int, int],
    reversed_fraction: float,
    k: int,
) -> list[dict[str, str]]:
    """Write patient k; its truth rows (a top-level function so worker processes can run it)."""
    return _patient(
        root, k, seed, release, splits[f"patient{k:04d}"],
        height=height, frames=frames, reversed_fraction=reversed_fraction,
    )  # fmt: skip


def synth_camus(
    out: str | Path,
    patients: int = 4,
    seed: int = 0,
    release: str = "2023",
    overwrite: bool = False,
    *,
    height: tuple[int, int] = (352, 616),
    frames: tuple[int, int] = (10, 30),
    reversed_fraction: float = 0.25,
    workers: int = 1,
) -> Path:
    """Write ``patients`` synthetic CAMUS patients (both views) in the layout of ``release``.

    Args:
        out: output folder (the ``CAMUS_public`` equivalent for 2023); created if missing.
        patients: number of patients, named patient0001 ... (patient k is the same whatever ``patients`` is).
        seed: base seed.
        release: "2023" (NIfTI) or "2019" (MetaImage).
        overwrite: allow writing into a non-empty folder (files written here are replaced; nothing is deleted).
        height: inclusive range of image heights (rows) drawn per patient; the width follows (ratio 1.1-1.25).
        frames: inclusive range of the number of frames per half sequence (drawn from a 35-60 fps rate and the
            systole length, then clipped to this range).
        reversed_fraction: probability that a half sequence is stored ES -> ED.
        workers: processes writing patients in parallel (the output is the same for any number).

    Returns:
        The output folder.

    Raises:
        InputError: ``out`` is a file or a non-empty folder without ``overwrite``.
        ValueError: bad sizes, counts or release.
    """
    if release not in RELEASES:
        raise ValueError(f"release must be one of {RELEASES}, got {release!r}")
    if patients < 1 or frames[0] < 2 or frames[1] < frames[0] or height[0] < 16 or height[1] < height[0]:
        raise ValueError(f"need patients >= 1, 2 <= frames[0] <= frames[1], 16 <= height[0] <= height[1]; got "
                         f"{patients}, {frames}, {height}")  # fmt: skip
    root = prepare_output(out, overwrite)
    splits = {f"patient{k:04d}": split_of(k - 1, SPLIT_NAMES, 10) for k in range(1, patients + 1)}
    one = partial(_patient_rows, root, seed, release, splits, height, frames, reversed_fraction)
    if workers > 1 and patients > 1:
        with ProcessPoolExecutor(max_workers=min(workers, patients)) as pool:
            per_patient = list(pool.map(one, range(1, patients + 1)))
    else:
        per_patient = [one(k) for k in range(1, patients + 1)]
    rows = [row for block in per_patient for row in block]
    _write_splits(root, release, splits)
    write_csv(root / "truth.csv", TRUTH_COLUMNS, rows)
    reversed_count = sum(r["stored_order"] == "ES->ED" for r in rows)
    logger.info("wrote %d CAMUS %s patients to %s (%d of %d half sequences stored ES->ED)",
                patients, release, root, reversed_count, len(rows))  # fmt: skip
    return root
