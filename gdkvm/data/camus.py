"""CAMUS loader: both public releases, read with SimpleITK, one sample per (patient, view).

Layouts (detected from the folder, see ``docs/reference/echo-data-and-ef.md`` section 1):

- 2023 "CAMUS_public": ``database_nifti/patientNNNN/patientNNNN_{2CH,4CH}_half_sequence[_gt].nii.gz`` with ground
  truth on every frame, ``Info_{2CH,4CH}.cfg`` (ED, ES 1-based, NbFrame, ImageQuality, EF, FrameRate) and the
  official split ``database_split/subgroup_{training,validation,testing}.txt``. ``root`` may be ``CAMUS_public``
  itself or the folder above it.
- 2019 challenge: ``training/patientNNNN/`` and ``testing/patientNNNN/`` with ``..._sequence.mhd`` (no labels) and
  ``..._{ED,ES}_gt.mhd``; only ED and ES are labelled. Without split files, ``train`` is ``training/`` and ``test``
  is ``testing/``; patients without ground truth (the withheld test set) are skipped with one warning.

Half sequences stored ES->ED (``ES == 1``, ``ED == NbFrame``) are reversed, so every sample runs ED..ES in time
order with ``ed_index`` 0 and ``es_index`` at the end; ``meta["stored_order"]`` records what was on disk.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from torch.utils.data import Dataset

from gdkvm.data.sampling import (
    check_mode,
    check_size,
    key_positions,
    label_lut,
    make_sample,
    nan_if_missing,
    relabel,
    resize_frames,
    resize_masks,
    resized_spacing,
    sample_indices,
)
from gdkvm.errors import InputError

logger = logging.getLogger(__name__)

VIEWS: tuple[str, ...] = ("2CH", "4CH")
SPLITS: dict[str, str] = {"train": "training", "val": "validation", "test": "testing"}
REQUIRED_CFG_KEYS: tuple[str, ...] = ("ED", "ES", "NbFrame", "ImageQuality")


@dataclass(frozen=True)
class CamusCase:
    """One (patient, view) of the index. ``ed``/``es`` are 0-based indices into the stored sequence."""

    patient: str
    view: str
    folder: Path
    release: str
    ed: int
    es: int
    nb_frames: int
    quality: str
    ef: float
    fps: float


def read_cfg(path: Path) -> dict[str, str]:
    """Parse a CAMUS ``Info_*.cfg`` (one ``Key: value`` per line) into a dict of strings."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise InputError(f"cannot read the info file ({err.strerror})", path) from None
    out: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip()
    missing = [key for key in REQUIRED_CFG_KEYS if key not in out]
    if missing:
        needs = ", ".join(REQUIRED_CFG_KEYS)
        raise InputError(f"info file lacks the key(s) {', '.join(missing)} (needs {needs})", path)
    return out


def read_image(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """Read a NIfTI or MetaImage file with SimpleITK.

    Returns:
        array: [T, H, W] (sequences) or [H, W] (key frames; a single-slice volume is squeezed).
        spacing: (row, col) mm per pixel from the header.
    """
    if not path.is_file():
        raise InputError("file not found", path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown SimpleITK error"
        raise InputError(f"cannot read the image ({reason})", path) from None
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (2, 3) or array.size == 0:
        raise InputError(f"expected a 2D image or a 3D (frames, rows, cols) sequence, got shape {array.shape}", path)
    spacing = image.GetSpacing()
    return array, (float(spacing[1]), float(spacing[0]))


def _to_frames(array: np.ndarray, path: Path) -> np.ndarray:
    """Image intensities as uint8 (0..255 data) or float32 in [0, 1]."""
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.integer):
        if array.min() < 0 or array.max() > 255:
            raise InputError(f"pixel values {array.min()}..{array.max()} are outside 0..255", path)
        return array.astype(np.uint8)
    data = array.astype(np.float32)
    if not np.isfinite(data).all():
        raise InputError("image contains NaN or infinite values", path)
    return data / 255.0 if data.max() > 1.0 else data


def find_layout(root: str | Path) -> tuple[str, Path]:
    """Detect the CAMUS release under ``root``.

    Returns:
        (release, base): ``"2023"`` with the folder holding ``database_nifti/``, or ``"2019"`` with the folder
        holding ``training/``/``testing/``.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError("CAMUS folder does not exist" if not root.exists() else "CAMUS root is not a folder", root)
    if not any(root.iterdir()):
        raise InputError("CAMUS folder is empty", root)
    for base in (root, root / "CAMUS_public"):
        if (base / "database_nifti").is_dir():
            return "2023", base
    if (root / "training").is_dir() or (root / "testing").is_dir():
        return "2019", root
    raise InputError(
        "not a CAMUS folder: expected database_nifti/patientNNNN/ (2023 NIfTI release, optionally under "
        "CAMUS_public/) or training/patientNNNN/ and testing/patientNNNN/ (2019 MetaImage release)",
        root,
    )


def _split_patients(base: Path, split: str, fold: int | None) -> set[str] | None:
    """Patients of the split list, None when ``split == "all"`` or (without ``fold``) no split file exists.

    Without ``fold`` the official ``database_split/subgroup_<split>.txt`` is used; with ``fold=k`` the 2019
    cross-validation list ``listSubGroups/subGroup<k>_<split>.txt``.
    """
    if split == "all":
        return None
    if fold is None:
        path = base / "database_split" / f"subgroup_{SPLITS[split]}.txt"
        if not path.is_file():
            return None
    else:
        path = base / "listSubGroups" / f"subGroup{fold}_{SPLITS[split]}.txt"
        if not path.is_file():
            raise InputError(f"no cross-validation list for fold {fold} (expected {path.name})", path.parent)
    names = set(re.findall(r"patient\d+", path.read_text(encoding="utf-8", errors="replace")))
    if not names:
        raise InputError("split file names no patients (expected one patientNNNN per line)", path)
    return names


def _patient_folders(release: str, base: Path, split: str, fold: int | None) -> list[Path]:
    """Patient folders of the requested split, sorted by name."""
    if release == "2023":
        pool = [base / "database_nifti"]
    else:
        pool = [base / name for name in ("training", "testing") if (base / name).is_dir()]
    folders = sorted((p for d in pool for p in d.glob("patient*") if p.is_dir()), key=lambda p: p.name)
    wanted = _split_patients(base, split, fold)
    if wanted is not None:
        missing = wanted - {p.name for p in folders}
        if missing:
            logger.warning("%d patient(s) of the %s split are missing under %s", len(missing), split, base)
        return [p for p in folders if p.name in wanted]
    if split == "all":
        return folders
    if release == "2019" and split in ("train", "test"):
        return [p for p in folders if p.parent.name == SPLITS[split]]
    raise InputError(
        f"no split list for split {split!r}: expected database_split/subgroup_{SPLITS[split]}.txt"
        + (" (2019 release: pass fold=1..10 to use listSubGroups/)" if release == "2019" else ""),
        base,
    )


def _make_case(folder: Path, view: str, release: str) -> CamusCase | None:
    """Index one (patient, view); None for 2019 patients without ground truth."""
    patient = folder.name
    cfg_path = folder / f"Info_{view}.cfg"
    if not cfg_path.is_file():
        raise InputError(f"missing info file Info_{view}.cfg", folder)
    cfg = read_cfg(cfg_path)
    if release == "2023":
        needed = [f"{patient}_{view}_half_sequence.nii.gz", f"{patient}_{view}_half_sequence_gt.nii.gz"]
    else:
        if not (folder / f"{patient}_{view}_ED_gt.mhd").is_file():
            return None
        needed = [f"{patient}_{view}_sequence.mhd", f"{patient}_{view}_ED_gt.mhd", f"{patient}_{view}_ES_gt.mhd"]
    for name in needed:
        if not (folder / name).is_file():
            raise InputError(f"missing file {name}", folder)
    try:
        ed, es, nb_frames = (int(float(cfg[key])) for key in ("ED", "ES", "NbFrame"))
    except ValueError:
        raise InputError("ED, ES and NbFrame must be numbers", cfg_path) from None
    if not (1 <= ed <= nb_frames and 1 <= es <= nb_frames):
        raise InputError(f"ED={ed} / ES={es} are outside 1..NbFrame={nb_frames} (1-based frame numbers)", cfg_path)
    ef = nan_if_missing(cfg.get("EF", cfg.get("LVef")))
    fps = nan_if_missing(cfg.get("FrameRate"))
    return CamusCase(patient, view, folder, release, ed - 1, es - 1, nb_frames, cfg["ImageQuality"], ef, fps)


def _read_sequence(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    array, spacing = read_image(path)
    if array.ndim != 3:
        raise InputError(f"expected a sequence of frames, got a single image of shape {array.shape}", path)
    return array, spacing


def load_case(case: CamusCase) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float], str]:
    """Read one (patient, view) in time order ED..ES.

    Returns:
        frames: [N, H, W] uint8 or float32 in [0, 1], the whole (half) sequence.
        masks: [N, H, W] uint8 CAMUS label ids (zeros where unlabelled).
        labelled: [N] bool.
        spacing: (row, col) mm per pixel.
        stored_order: "ED->ES" or "ES->ED" as found on disk.
    """
    stem = case.folder / f"{case.patient}_{case.view}"
    if case.release == "2023":
        seq_path, gt_path = Path(f"{stem}_half_sequence.nii.gz"), Path(f"{stem}_half_sequence_gt.nii.gz")
        raw, spacing = _read_sequence(seq_path)
        masks, _ = read_image(gt_path)
        if masks.shape != raw.shape:
            raise InputError(f"ground truth shape {masks.shape} differs from the sequence's {raw.shape}", gt_path)
        labelled = np.ones(raw.shape[0], dtype=bool)
    else:
        seq_path = Path(f"{stem}_sequence.mhd")
        raw, spacing = _read_sequence(seq_path)
        masks = np.zeros(raw.shape, dtype=np.uint8)
        labelled = np.zeros(raw.shape[0], dtype=bool)
        for key, index in (("ED", case.ed), ("ES", case.es)):
            gt_path = Path(f"{stem}_{key}_gt.mhd")
            gt, _ = read_image(gt_path)
            if gt.shape != raw.shape[1:] or index >= raw.shape[0]:
                raise InputError(f"{key} mask {gt.shape} does not fit frame {index + 1} of {raw.shape}", gt_path)
            masks[index], labelled[index] = gt, True
    if max(case.ed, case.es) >= raw.shape[0]:
        raise InputError(f"ED/ES frame numbers exceed the {raw.shape[0]} frames of the file", seq_path)
    if masks.min() < 0 or masks.max() > 3:
        raise InputError(f"label values {masks.min()}..{masks.max()} are outside 0..3", seq_path)
    frames, masks = _to_frames(raw, seq_path), masks.astype(np.uint8)
    if case.es < case.ed:
        return frames[::-1], masks[::-1], labelled[::-1], spacing, "ES->ED"
    return frames, masks, labelled, spacing, "ED->ES"


def cached_case(case: CamusCase, size: int, cache_dir: Path) -> tuple:
    """:func:`load_case` resized to ``size``, through an ``.npz`` cache keyed by the source files' size and mtime.

    Returns:
        frames [N, size, size] uint8, masks [N, size, size] uint8, labelled [N] bool, native (row, col) spacing,
        stored_order, and the native (H, W).
    """
    sources = sorted([*case.folder.glob(f"{case.patient}_{case.view}_*"), case.folder / f"Info_{case.view}.cfg"])
    key = ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sources if p.is_file())
    path = cache_dir / f"camus{case.release}_{case.patient}_{case.view}_{size}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                if str(z["key"]) == key:
                    spacing, shape = tuple(z["spacing"].tolist()), tuple(z["shape"].tolist())
                    return z["frames"], z["masks"], z["labelled"], spacing, str(z["order"]), shape
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            logger.debug("rebuilding unreadable cache entry %s", path)
    frames, masks, labelled, spacing, order = load_case(case)
    small = np.rint(resize_frames(frames, size) * 255.0).astype(np.uint8)
    small_masks, shape = resize_masks(masks, size), (int(frames.shape[1]), int(frames.shape[2]))
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, frames=small, masks=small_masks, labelled=labelled, spacing=np.array(spacing), order=order,
             shape=np.array(shape), key=key)  # fmt: skip
    os.replace(tmp, path)  # atomic: concurrent workers never read a half-written entry
    return small, small_masks, labelled, spacing, order, shape


class CamusDataset(Dataset):
    """CAMUS clips, one sample per (patient, view), as dicts of the shared clip contract.

    Args:
        root: CAMUS folder (2023 ``CAMUS_public`` or its parent, or the 2019 folder with ``training/``).
        split: "train", "val", "test" (official split files) or "all".
        views: any of "2CH", "4CH".
        labels: structures to keep, renumbered 1..C in this order: ("lv",) or ("lv", "myo", "la").
        num_frames: frames per clip in clip mode, sampled uniformly ED..ES (endpoints included).
        size: output side length in pixels (square; spacing is scaled to match).
        mode: "clip" (``num_frames`` frames ED..ES) or "full" (every frame of the half sequence).
        transform: optional callable applied to the finished sample dict (e.g. :class:`ClipTransform`).
        fold: 2019 release only: use the cross-validation lists ``listSubGroups/subGroup<fold>_<split>.txt``
            (1..10) instead of ``database_split/``.
        cache_dir: optional folder for a decoded cache: each (patient, view) is stored once, resized to ``size``,
            as an uncompressed ``.npz`` (frames rounded to uint8), which skips the gzip decoding of the NIfTI files
            on later epochs. Entries are rebuilt when a source file changes. None (default) writes nothing.

    A sample holds ``frames`` [T, 1, size, size] float32 in [0, 1], ``masks`` [T, size, size] int64,
    ``labelled`` [T] bool, ``spacing`` [2] float32 (row, col) mm and ``meta`` (id, patient, view, ed_index,
    es_index, ef, dataset, release, image_quality, fps, orig_height, orig_width, num_source_frames, stored_order).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        views: Sequence[str] = VIEWS,
        labels: Sequence[str] = ("lv",),
        num_frames: int = 10,
        size: int = 256,
        mode: str = "clip",
        transform: Callable[[dict], dict] | None = None,
        fold: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        if split not in (*SPLITS, "all"):
            raise ValueError(f"split must be one of {(*SPLITS, 'all')}, got {split!r}")
        if isinstance(views, str) or not views or any(v not in VIEWS for v in views):
            raise ValueError(f"views must be a non-empty sequence of {VIEWS}, got {views!r}")
        self.lut = label_lut(labels)
        self.labels, self.views, self.split = tuple(labels), tuple(views), split
        self.num_frames, self.size, self.mode = num_frames, check_size(size), check_mode(mode)
        if mode == "clip" and num_frames < 2:
            raise ValueError(f"num_frames must be >= 2 in clip mode, got {num_frames}")
        self.transform = transform
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.release, self.base = find_layout(root)
        if fold is not None and self.release != "2019":
            raise InputError(f"fold={fold} selects 2019 cross-validation lists, but this is the 2023 release", root)
        folders = _patient_folders(self.release, self.base, split, fold)
        cases = [_make_case(folder, view, self.release) for folder in folders for view in self.views]
        self.cases: list[CamusCase] = [c for c in cases if c is not None]
        skipped = len(cases) - len(self.cases)
        if skipped:
            logger.warning("skipped %d CAMUS (patient, view) pair(s) without ground truth under %s", skipped, self.base)
        if not self.cases:
            raise InputError(f"no CAMUS cases with ground truth for split {split!r} and views {self.views}", self.base)
        logger.info("CAMUS %s (%s release): %d cases from %s", split, self.release, len(self.cases), self.base)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict[str, object]:
        case = self.cases[index]
        if self.cache_dir is None:
            frames, masks, labelled, spacing, stored_order = load_case(case)
            orig = (int(frames.shape[1]), int(frames.shape[2]))
        else:  # already at self.size; the resizes below are then no-ops
            frames, masks, labelled, spacing, stored_order, orig = cached_case(case, self.size, self.cache_dir)
        n = frames.shape[0]
        ed, es = (case.ed, case.es) if stored_order == "ED->ES" else (n - 1 - case.ed, n - 1 - case.es)
        idx = sample_indices(ed, es, self.num_frames) if self.mode == "clip" else np.arange(n)
        ed_pos, es_pos = key_positions(idx, ed, es)
        meta = {
            "id": f"{case.patient}_{case.view}",
            "patient": case.patient,
            "view": case.view,
            "ed_index": ed_pos,
            "es_index": es_pos,
            "ef": case.ef,
            "dataset": "camus",
            "release": case.release,
            "image_quality": case.quality,
            "fps": case.fps,
            "orig_height": orig[0],
            "orig_width": orig[1],
            "num_source_frames": int(n),
            "stored_order": stored_order,
        }
        sample = make_sample(
            resize_frames(frames[idx], self.size),
            relabel(resize_masks(masks[idx], self.size), self.lut),
            labelled[idx],
            resized_spacing(spacing, orig, self.size),
            meta,
        )
        return self.transform(sample) if self.transform is not None else sample


__all__ = ["CamusCase", "CamusDataset", "find_layout", "load_case", "read_cfg", "read_image"]
