"""Tiny CAMUS-2023 and EchoNet-Dynamic folders with known LV geometry, written by the tests themselves.

The LV is a half prolate ellipsoid (apex up, flat base) with semi-axes L (long), b (A4C half-width) and c (A2C
half-width), so the true volume is ``2/3 pi L b c`` and the true EF is known exactly. CAMUS views also carry a
myocardium ring and an LA below the base (labels 2 and 3).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import SimpleITK as sitk

from tests.ef.shapes import ellipse, half_ellipse


def true_volume(length: float, b: float, c: float) -> float:
    """mL of a half ellipsoid with semi-axes in mm."""
    return 2.0 / 3.0 * math.pi * length * b * c / 1000.0


def camus_labels(shape, sp, length: float, half_width: float) -> np.ndarray:
    """[H, W] CAMUS label map: LV (1), myocardium (2), LA (3); base at 75 % of the height, in mm."""
    h, w = shape
    base, col = 0.75 * h * sp[0], 0.5 * w * sp[1]
    yy = np.mgrid[:h, :w][0] * sp[0]
    lab = half_ellipse(h, w, base, col, length, half_width, sp)
    myo = ellipse(h, w, (base, col), (length + 8.0, half_width + 8.0), sp).astype(bool) & (yy <= base) & (lab == 0)
    lab[myo] = 2
    la = ellipse(h, w, (base, col), (0.2 * h * sp[0], half_width + 4.0), sp).astype(bool) & (yy > base)
    lab[la] = 3
    return lab


def write_camus_2023(root: Path, params: list[dict], *, sp=(0.6, 0.6), shape=(200, 170), frames: int = 6) -> None:
    """Write ``root/database_nifti/patientNNNN/...`` for each entry of ``params`` (keys L, b, c, k_l, k_r, and
    optional ``order`` "ED->ES"/"ES->ED", ``drop`` a file name suffix to leave out), plus the test split file and
    ``truth.csv``. The cfg EF is the rounded true EF."""
    base = root / "database_nifti"
    names = []
    truth = []
    for i, p in enumerate(params, 1):
        pid = f"patient{i:04d}"
        names.append(pid)
        folder = base / pid
        folder.mkdir(parents=True, exist_ok=True)
        edv = true_volume(p["L"], p["b"], p["c"])
        esv = true_volume(p["L"] * p["k_l"], p["b"] * p["k_r"], p["c"] * p["k_r"])
        ef = 100.0 * (edv - esv) / edv
        truth.append({"patient": pid, "edv_ml": edv, "esv_ml": esv, "ef_true": ef})
        for view, hw in (("4CH", p["b"]), ("2CH", p["c"])):
            t = np.linspace(0.0, 1.0, frames)
            seq = np.stack(
                [camus_labels(shape, sp, p["L"] * (1 + (p["k_l"] - 1) * s), hw * (1 + (p["k_r"] - 1) * s)) for s in t]
            ).astype(np.uint8)
            ed, es = 1, frames
            if p.get("order") == "ES->ED":
                seq, ed, es = seq[::-1], frames, 1
            img = np.array([10, 250, 90, 170], dtype=np.uint8)[seq]  # LV brightest: a fake model can threshold it
            for suffix, arr in (("half_sequence", img), ("half_sequence_gt", seq)):
                if p.get("drop") == f"{view}_{suffix}":
                    continue
                im = sitk.GetImageFromArray(np.ascontiguousarray(arr))
                im.SetSpacing((sp[1], sp[0], 1.0))
                sitk.WriteImage(im, str(folder / f"{pid}_{view}_{suffix}.nii.gz"))
            cfg = f"ED: {ed}\nES: {es}\nNbFrame: {frames}\nSex: F\nAge: 60\nImageQuality: Good\n"
            cfg += f"EF: {round(ef)}\nFrameRate: 40.0\n"
            (folder / f"Info_{view}.cfg").write_text(cfg)
    split = root / "database_split"
    split.mkdir(parents=True, exist_ok=True)
    (split / "subgroup_testing.txt").write_text("\n".join(names) + "\n")
    _write_csv(root / "truth.csv", truth)


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def tracing_rows(length: float, half_width: float, base_y: float = 95.0, x0: float = 56.0) -> np.ndarray:
    """[21, 4] EchoNet tracing of a half ellipse (pixels): row 0 the long axis, rows 1..20 chords base -> apex."""
    rows = [[x0, base_y, x0, base_y - length]]
    for i in range(20):
        z = length * i / 20.0
        w = half_width * math.sqrt(max(0.0, 1.0 - (z / length) ** 2))
        rows.append([x0 - w, base_y - z, x0 + w, base_y - z])
    return np.asarray(rows)


def write_echonet(root: Path, params: list[dict], *, frames: int = 30) -> None:
    """Write ``FileList.csv``, ``VolumeTracings.csv``, ``Videos/*.avi`` (112 x 112 MJPG) and ``truth.csv`` for
    single-plane LVs (keys L, b, k_l, k_r, ed, es; optional ``untraced``). The FileList EF is the true
    single-plane (rotational) EF rounded to 0.1."""
    (root / "Videos").mkdir(parents=True, exist_ok=True)
    files, tracings, truth = [], [], []
    for i, p in enumerate(params):
        name = f"0X{i:04X}"
        edv = p["L"] * p["b"] ** 2
        esv = p["L"] * p["k_l"] * (p["b"] * p["k_r"]) ** 2
        ef = 100.0 * (edv - esv) / edv
        files.append({"FileName": name, "EF": f"{ef:.1f}", "ESV": "", "EDV": "", "FrameHeight": 112,
                      "FrameWidth": 112, "FPS": 50, "NumberOfFrames": frames, "Split": "TEST"})  # fmt: skip
        truth.append({"FileName": name, "ef_true": ef})
        if not p.get("untraced"):
            for frame, s in ((p["es"], 1.0), (p["ed"], 0.0)):
                rows = tracing_rows(p["L"] * (1 + (p["k_l"] - 1) * s), p["b"] * (1 + (p["k_r"] - 1) * s))
                tracings += [{"FileName": f"{name}.avi", "X1": r[0], "Y1": r[1], "X2": r[2], "Y2": r[3],
                              "Frame": frame} for r in rows]  # fmt: skip
        writer = cv2.VideoWriter(str(root / "Videos" / f"{name}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 50, (112, 112))
        for t in range(frames):
            writer.write(np.full((112, 112, 3), 20 + t, dtype=np.uint8))
        writer.release()
    _write_csv(root / "FileList.csv", files)
    _write_csv(root / "VolumeTracings.csv", tracings)
    _write_csv(root / "truth.csv", truth)
