"""EF of a whole data set against its reference: per-case rows, agreement metrics, plots (this module does I/O).

- CAMUS: per patient, the ED and ES frames of both views at their native resolution and spacing (``load_case``),
  scored with every requested method: ``camus`` (the official biplane script, which produced the 2023 cfg ``EF``),
  ``biplane`` (ASE method of discs), and the single-plane ``discs`` / ``area-length`` on the A4C view.
- EchoNet-Dynamic: per video, the two traced frames; ground-truth masks are the tracing polygons rasterised at
  ``ECHONET_UPSAMPLE`` times the video size (EchoNet's volumes are single-plane discs on the tracing). The reference
  is the FileList ``EF`` (a clinical value, not recomputed from the tracings).
- A model (``segment`` callable) replaces the ground-truth masks by predicted ones on the same frames; on EchoNet
  it also scores ``discs-beats``: the median EF over the beats detected in the whole video.
- On synthetic data, ``truth.csv`` (the generator's true EF from its 3D geometry) is a second reference.

Every case yields one row per method; a case that cannot be scored gets its reason in ``status``, and the rest of
the set still runs.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gdkvm.ef.pipeline import compute_ef
from gdkvm.errors import GdkvmError, InputError

__all__ = [
    "CAMUS_METHODS",
    "ECHONET_METHODS",
    "PER_CASE_FIELDS",
    "CaseRow",
    "evaluate_camus",
    "evaluate_echonet",
    "read_truth",
]

logger = logging.getLogger(__name__)

CAMUS_METHODS: tuple[str, ...] = ("camus", "biplane", "discs", "area-length")
ECHONET_METHODS: tuple[str, ...] = ("discs", "area-length")
ECHONET_UPSAMPLE = 4
# frames [T, H, W] -> labels [T, H, W] (uint8 label ids at the same resolution)
SegmentFn = Callable[[np.ndarray], np.ndarray]
ProgressFn = Callable[[Iterable], Iterable]


# (EF %, EDV mL, ESV mL) from truth.csv; NaN where unknown
Truth = tuple[float, float, float]
NO_TRUTH: Truth = (math.nan, math.nan, math.nan)


@dataclass
class CaseRow:
    """One (case, method) line of ``per_case.csv``; ``ef`` is NaN and ``status`` says why when there is no EF.

    ``ed_frame``/``es_frame`` are 0-based frames in time order (``A4C|A2C`` for biplane, ``;``-joined for beats).
    """

    case_id: str
    method: str
    ef_reference: float
    ef_true: float
    edv_true: float
    esv_true: float
    status: str
    views: str = ""
    ed_frame: str = ""
    es_frame: str = ""
    edv: float = math.nan
    esv: float = math.nan
    unit: str = ""
    ef: float = math.nan


PER_CASE_FIELDS: tuple[str, ...] = (
    "case_id", "method", "views", "ed_frame", "es_frame", "edv", "esv", "unit", "ef", "ef_reference", "ef_true",
    "edv_true", "esv_true", "status",
)  # fmt: skip


def _first(cols: list[str], names: tuple[str, ...]) -> str | None:
    return next((c for c in names if c in cols), None)


def read_truth(root: str | Path) -> dict[str, Truth]:
    """True (EF, EDV, ESV) per case from the synthetic generator's ``truth.csv`` (empty when absent).

    Looked up in ``root`` and its parent. The case column is the first of ``id``, ``case_id``, ``patient``,
    ``FileName``, ``name``; EF the first of ``ef_true``, ``true_ef``, ``EF``, ``ef``; volumes ``edv_ml``/``EDV`` and
    ``esv_ml``/``ESV`` when present. Names are matched without a ``.avi`` suffix.
    """
    root = Path(root)
    path = next((p for p in (root / "truth.csv", root.parent / "truth.csv") if p.is_file()), None)
    if path is None:
        return {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        cols = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = cols
        key = _first(cols, ("id", "case_id", "patient", "FileName", "name"))
        ef = _first(cols, ("ef_true", "true_ef", "EF", "ef"))
        edv, esv = _first(cols, ("edv_ml", "edv_true", "EDV")), _first(cols, ("esv_ml", "esv_true", "ESV"))
        if key is None or ef is None:
            raise InputError(f"truth.csv needs a case column and an EF column, found {', '.join(cols)}", path)
        out: dict[str, Truth] = {}
        for row in reader:
            name = row[key].strip()
            name = name[:-4] if name.lower().endswith(".avi") else name
            vals = [_float(row.get(c)) if c else math.nan for c in (ef, edv, esv)]
            out[name] = (vals[0], vals[1], vals[2])
    logger.info("true EF for %d cases from %s", len(out), path)
    return out


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _fail_rows(case_id: str, methods: Iterable[str], reason: str, ref: float, true: Truth) -> list[CaseRow]:
    return [CaseRow(case_id, m, ref, *true, reason) for m in methods]


def _row(case_id: str, method: str, ref: float, true: Truth, **kw) -> CaseRow:
    """Score one case with ``compute_ef(**kw)``: the first beat (given frames), or the median over detected beats
    for the ``-beats`` methods."""
    try:
        rep = compute_ef(method=method.removesuffix("-beats"), **kw)
    except (GdkvmError, ValueError) as err:
        return CaseRow(case_id, method, ref, *true, str(err))
    row = CaseRow(case_id, method, ref, *true, "ok", views=rep.views, unit=rep.unit)
    if method.endswith("-beats"):
        ok = [b for b in rep.beats if b.accepted]
        row.status = "ok" if ok else f"no accepted beat of {len(rep.beats)}"
        if ok:
            row.ef = float(rep.summary.median)
            row.edv, row.esv = (float(np.median([getattr(b, k) for b in ok])) for k in ("edv", "esv"))
            row.ed_frame, row.es_frame = ";".join(str(b.ed) for b in ok), ";".join(str(b.es) for b in ok)
        return row
    b = rep.beats[0]
    row.ed_frame = str(b.ed) if b.ed_a2c is None else f"{b.ed}|{b.ed_a2c}"
    row.es_frame = str(b.es) if b.es_a2c is None else f"{b.es}|{b.es_a2c}"
    row.edv, row.esv = (math.nan if v is None else float(v) for v in (b.edv, b.esv))
    row.ef = float(b.ef) if b.accepted and b.ef is not None else math.nan
    row.status = "ok" if b.accepted else str(b.reason)
    return row


def _camus_view(case, segment: SegmentFn | None) -> tuple[np.ndarray, tuple[float, float], int, int]:
    """(masks [2, H, W] at ED and ES, spacing, 0, 1) of one CAMUS (patient, view) at native resolution."""
    from gdkvm.data.camus import load_case

    frames, masks, _, spacing, order = load_case(case)
    n = frames.shape[0]
    ed, es = (case.ed, case.es) if order == "ED->ES" else (n - 1 - case.ed, n - 1 - case.es)
    if segment is not None:
        masks = segment(np.ascontiguousarray(frames))
    return np.stack([masks[ed], masks[es]]).astype(np.int64), spacing, ed, es


def _camus_cases(root: str | Path, split: str) -> Iterator[tuple[str, dict, str | None]]:
    """(patient, {view: CamusCase}, problem or None) in patient order.

    The loader's index (``CamusDataset``) is used when every case indexes; when one does not (a missing file or
    cfg key), each patient folder is indexed on its own so that only that patient fails.
    """
    from gdkvm.data.camus import SPLITS, CamusDataset, _make_case, find_layout

    try:
        ds = CamusDataset(root, split=split, views=("4CH", "2CH"))
    except InputError as err:
        logger.warning("CAMUS index failed (%s); indexing patient by patient", err)
    else:
        grouped: dict[str, dict] = {}
        for case in ds.cases:
            grouped.setdefault(case.patient, {})[case.view] = case
        for patient in sorted(grouped):
            yield patient, grouped[patient], None
        return
    release, base = find_layout(root)
    pool = [base / "database_nifti"] if release == "2023" else [base / "training", base / "testing"]
    folders = sorted((p for d in pool if d.is_dir() for p in d.glob("patient*") if p.is_dir()), key=lambda p: p.name)
    listing = base / "database_split" / f"subgroup_{SPLITS.get(split, split)}.txt"
    if split != "all" and listing.is_file():
        wanted = set(listing.read_text(encoding="utf-8", errors="replace").split())
        folders = [f for f in folders if f.name in wanted]
    for folder in folders:
        views, problems = {}, []
        for view in ("4CH", "2CH"):
            try:
                case = _make_case(folder, view, release)
            except InputError as err:
                problems.append(str(err))
                continue
            if case is not None:
                views[view] = case
            else:
                problems.append(f"{view}: no ground truth")
        yield folder.name, views, "; ".join(problems) or None


def evaluate_camus(
    root: str | Path,
    split: str,
    *,
    methods: Iterable[str] = CAMUS_METHODS,
    segment: SegmentFn | None = None,
    progress: ProgressFn | None = None,
) -> list[CaseRow]:
    """Score every patient of a CAMUS split (see the module docstring)."""
    from gdkvm.data.camus import find_layout

    methods = tuple(methods)
    truth = read_truth(find_layout(root)[1])
    rows: list[CaseRow] = []
    patients = list(_camus_cases(root, split))
    for patient, views, problem in progress(patients) if progress else patients:
        ref = next((c.ef for c in views.values() if math.isfinite(c.ef)), math.nan)
        true = truth.get(patient, NO_TRUTH)
        if "4CH" not in views:
            rows += _fail_rows(patient, methods, problem or "missing A4C view", ref, true)
            continue
        try:
            m4, sp4, ed4, es4 = _camus_view(views["4CH"], segment)
            a2c = _camus_view(views["2CH"], segment) if "2CH" in views else None
        except (GdkvmError, ValueError) as err:
            rows += _fail_rows(patient, methods, str(err), ref, true)
            continue
        for method in methods:
            kw = {"spacing": sp4, "ed_es": (0, 1)}
            if method in ("camus", "biplane"):
                if a2c is None:
                    rows += _fail_rows(patient, [method], problem or "missing A2C view for biplane", ref, true)
                    continue
                kw.update(masks_a2c=a2c[0], spacing_a2c=a2c[1], ed_es_a2c=(0, 1))
            row = _row(patient, method, ref, true, masks=m4, **kw)
            row.ed_frame, row.es_frame = _camus_frames(row, ed4, es4, a2c)
            rows.append(row)
    return rows


def _camus_frames(row: CaseRow, ed4: int, es4: int, a2c) -> tuple[str, str]:
    if not row.views:
        return "", ""
    if a2c is not None and "+" in row.views:
        return f"{ed4}|{a2c[2]}", f"{es4}|{a2c[3]}"
    return str(ed4), str(es4)


def evaluate_echonet(
    root: str | Path,
    split: str,
    *,
    methods: Iterable[str] = ECHONET_METHODS,
    segment: SegmentFn | None = None,
    progress: ProgressFn | None = None,
) -> tuple[list[CaseRow], dict[str, int]]:
    """Score every video of an EchoNet-Dynamic split; also returns the loader's drop counts by reason."""
    from gdkvm.data.echonet import EchoNetDataset, rasterize, read_gray_frames

    ds = EchoNetDataset(root, split=split, mode="full")
    methods = tuple(methods) + (("discs-beats",) if segment is not None else ())
    truth = read_truth(ds.root)
    rows = _echonet_dropped(ds, methods, truth)
    videos = ds.videos
    for v in progress(videos) if progress else videos:
        true = truth.get(v.name, NO_TRUTH)
        try:
            if segment is None:
                size = ECHONET_UPSAMPLE * max(v.height, v.width)
                masks = np.stack([rasterize(p, (v.height, v.width), size) for p in (v.ed_polygon, v.es_polygon)])
                full = None
            else:
                full = segment(read_gray_frames(v.path, None))
                masks = full[[v.ed, v.es]]
        except (GdkvmError, ValueError) as err:
            rows += _fail_rows(v.name, methods, str(err), v.ef, true)
            continue
        for method in methods:
            if method.endswith("-beats"):
                row = _row(v.name, method, v.ef, true, masks=full, fps=v.fps)
            else:
                row = _row(v.name, method, v.ef, true, masks=masks.astype(np.int64), ed_es=(0, 1))
                if row.views:
                    row.ed_frame, row.es_frame = str(v.ed), str(v.es)
            rows.append(row)
    return rows, dict(ds.dropped)


def _echonet_dropped(ds, methods: tuple[str, ...], truth: dict[str, float]) -> list[CaseRow]:
    """Rows for the FileList videos of the split that the loader dropped (untraced or malformed tracings)."""
    from gdkvm.data.echonet import _read_csv, _stem

    kept = {v.name for v in ds.videos}
    rows: list[CaseRow] = []
    for r in _read_csv(ds.root / "FileList.csv", ("FileName", "EF", "Split")):
        if ds.split != "all" and r["Split"].strip().upper() != ds.split.upper():
            continue
        name = _stem(r["FileName"])
        if name not in kept:
            try:
                ref = float(r["EF"])
            except ValueError:
                ref = math.nan
            reason = "dropped by the loader: fewer than two valid traced frames (untraced or malformed tracings)"
            rows += _fail_rows(name, methods, reason, ref, truth.get(name, NO_TRUTH))
    return rows


def write_per_case(rows: list[CaseRow], path: str | Path) -> Path:
    """Write ``per_case.csv`` (one line per case and method)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=PER_CASE_FIELDS)
        writer.writeheader()
        for row in rows:
            d = asdict(row)
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()})
    return path


def agreement(rows: list[CaseRow]) -> dict[str, dict]:
    """Per method: EF agreement with the data set's reference and, where known, with the true EF."""
    from gdkvm.metrics.regression import compute_ef_agreement

    out: dict[str, dict] = {}
    for method in dict.fromkeys(r.method for r in rows):
        sel = [r for r in rows if r.method == method]
        pred = np.array([r.ef for r in sel])
        ref = np.array([r.ef_reference for r in sel])
        true = np.array([r.ef_true for r in sel])
        out[method] = {
            "n_cases": len(sel),
            "n_no_ef": int(np.isnan(pred).sum()),
            "vs_reference": compute_ef_agreement(pred, ref) if np.isfinite(ref).any() else None,
            "vs_truth": compute_ef_agreement(pred, true) if np.isfinite(true).any() else None,
        }
        in_ml = [r for r in sel if r.unit == "mL"]
        for key in ("edv", "esv"):  # volume agreement (mL) with the true 3D volumes, where both exist
            vol = np.array([getattr(r, key) for r in in_ml])
            vol_true = np.array([getattr(r, f"{key}_true") for r in in_ml])
            ok = np.isfinite(vol) & np.isfinite(vol_true)
            out[method][f"{key}_vs_truth_ml"] = compute_ef_agreement(vol[ok], vol_true[ok]) if ok.any() else None
    return out


def write_outputs(rows: list[CaseRow], out_dir: str | Path, *, primary: str, info: dict) -> dict:
    """Write ``per_case.csv``, ``ef_metrics.json``, ``bland_altman.png`` and ``scatter.png`` (primary method
    against the reference; against the true EF when there is no reference, and ``*_truth.png`` as well when both
    exist). Returns the metrics dict."""
    import json

    from gdkvm.ef.report import to_jsonable
    from gdkvm.plots import bland_altman_plot, scatter_plot

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_per_case(rows, out / "per_case.csv")
    metrics = {**info, "primary_method": primary, "methods": agreement(rows)}
    (out / "ef_metrics.json").write_text(json.dumps(to_jsonable(metrics), indent=2) + "\n", encoding="utf-8")
    sel = [r for r in rows if r.method == primary]
    pred = np.array([r.ef for r in sel])
    ref, true = np.array([r.ef_reference for r in sel]), np.array([r.ef_true for r in sel])
    has_ref, has_true = bool(np.isfinite(ref).any()), bool(np.isfinite(true).any())
    targets = [("reference", ref, "")] if has_ref or not has_true else [("true", true, "")]
    if has_ref and has_true:
        targets.append(("true", true, "_truth"))
    name = info.get("data", "")
    for label, ref, suffix in targets:
        title = f"{name} {info.get('split', '')}: EF by {primary} vs {label} EF"
        bland_altman_plot(pred, ref, out / f"bland_altman{suffix}.png", title=f"Bland-Altman, {title}", ref_name=label)
        scatter_plot(pred, ref, out / f"scatter{suffix}.png", title=title, ref_name=label)
    return metrics
