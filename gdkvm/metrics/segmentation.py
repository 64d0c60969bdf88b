"""Segmentation metrics on labelled echo frames: Dice, IoU, HD95 and ASSD through MONAI, per ED / ES and overall.

Every labelled frame and class gives one *row* (a plain dict), so per-case tables, per-phase means and the pooled
Dice of EchoNet-Dynamic / SimLVSeg (sum of intersections over sum of sizes over a whole set) all come from the same
rows. Conventions, stated once:

- Dice and IoU per image follow MONAI with ``ignore_empty=True``: an image whose ground truth is empty gives NaN and
  is left out of the means (counted as ``n_empty_gt`` or ``n_both_empty``). An empty prediction against a non-empty
  ground truth scores Dice 0 (counted as ``n_empty_pred``).
- HD95 (``HausdorffDistanceMetric(percentile=95)``) and ASSD (``SurfaceDistanceMetric(symmetric=True)``) are undefined
  when either mask is empty (MONAI returns NaN or inf there). We never call MONAI on such images: their distances are
  NaN, they are counted in ``n_distance_undefined``, and the distance means cover the other images only.
- Distances are in millimetres where the frame's pixel spacing is known and in pixels where it is NaN; the two are never
  averaged together: summary keys carry the unit (``hd95_mm`` / ``hd95_px``).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import warnings
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric, MeanIoU, SurfaceDistanceMetric

logger = logging.getLogger(__name__)


class Phase(str, Enum):
    """Cardiac phase of a labelled frame."""

    ED = "ED"
    ES = "ES"
    OTHER = "other"


#: Columns of one row (one labelled frame and class), in the order ``per_case.csv`` writes them.
ROW_FIELDS: tuple[str, ...] = (
    "case_id",
    "dataset",
    "view",
    "frame",
    "phase",
    "class_name",
    "dice",
    "iou",
    "hd95",
    "assd",
    "distance_unit",
    "gt_pixels",
    "pred_pixels",
    "intersection",
)


def _one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[N, H, W] int label ids -> [N, C + 1, H, W] float one-hot (channel 0 background)."""
    return torch.nn.functional.one_hot(labels.long(), num_classes + 1).permute(0, 3, 1, 2).float()


class FrameScorer:
    """Per-frame, per-class Dice, IoU, HD95 and ASSD of label maps, using MONAI's metric classes.

    Args:
        num_classes: foreground classes C (label ids 1..C; 0 is background and is not scored).
        distances: compute HD95 and ASSD (slower, CPU); when False they are NaN.
    """

    def __init__(self, num_classes: int, distances: bool = True) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.distances = distances
        self._dice = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
        self._iou = MeanIoU(include_background=False, reduction="none", ignore_empty=True)
        self._hd95 = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="none")
        self._assd = SurfaceDistanceMetric(include_background=False, symmetric=True, reduction="none")

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, spacing: torch.Tensor | None = None) -> dict:
        """Score N frames.

        Args:
            pred: [N, H, W] int predicted label ids in 0..C.
            target: [N, H, W] int ground-truth label ids in 0..C.
            spacing: [N, 2] float mm per pixel (row, col); NaN rows (or None) mean unknown, distances then in pixels.

        Returns:
            dict of float64 numpy arrays: ``dice``, ``iou``, ``hd95``, ``assd``, ``gt_pixels``, ``pred_pixels``,
            ``intersection``, each [N, C]; and ``in_mm`` [N] bool (distances of that frame are in mm).
        """
        if pred.shape != target.shape or pred.ndim != 3:
            raise ValueError(
                f"pred and target must both be [N, H, W], got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        n = pred.shape[0]
        pred, target = pred.detach().cpu().long(), target.detach().cpu().long()
        if spacing is None:
            spacing = torch.full((n, 2), float("nan"))
        spacing = spacing.detach().cpu().double().reshape(n, 2)
        in_mm = torch.isfinite(spacing).all(dim=1) & (spacing > 0).all(dim=1)
        p1, g1 = _one_hot(pred, self.num_classes), _one_hot(target, self.num_classes)
        inter = (p1 * g1).sum(dim=(2, 3))[:, 1:].double()
        pred_px, gt_px = p1.sum(dim=(2, 3))[:, 1:].double(), g1.sum(dim=(2, 3))[:, 1:].double()
        out = {
            "dice": self._run(self._dice, p1, g1),
            "iou": self._run(self._iou, p1, g1),
            "hd95": np.full((n, self.num_classes), np.nan),
            "assd": np.full((n, self.num_classes), np.nan),
            "gt_pixels": gt_px.numpy(),
            "pred_pixels": pred_px.numpy(),
            "intersection": inter.numpy(),
            "in_mm": in_mm.numpy(),
        }
        if self.distances:
            self._distances(out, p1, g1, spacing, in_mm)
        return out

    @staticmethod
    def _run(metric: Any, p1: torch.Tensor, g1: torch.Tensor, **kwargs: Any) -> np.ndarray:
        """Call one MONAI metric on a batch and return its [N, C] values (its buffer is cleared again)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = metric(y_pred=p1, y=g1, **kwargs)
        metric.reset()
        return value.double().cpu().numpy()

    def _distances(
        self, out: dict, p1: torch.Tensor, g1: torch.Tensor, spacing: torch.Tensor, in_mm: torch.Tensor
    ) -> None:
        """Fill ``hd95``/``assd`` [N, C] for frame-class pairs where both masks are non-empty (others stay NaN)."""
        for c in range(self.num_classes):
            ok = (out["gt_pixels"][:, c] > 0) & (out["pred_pixels"][:, c] > 0)
            idx = np.flatnonzero(ok)
            if idx.size == 0:
                continue
            ch = [0, c + 1]  # MONAI wants a background channel it then drops (include_background=False)
            p, g = p1[idx][:, ch], g1[idx][:, ch]
            sp = [tuple(spacing[i].tolist()) if bool(in_mm[i]) else (1.0, 1.0) for i in idx]
            out["hd95"][idx, c] = self._run(self._hd95, p, g, spacing=sp)[:, 0]
            out["assd"][idx, c] = self._run(self._assd, p, g, spacing=sp)[:, 0]


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v) and not math.isinf(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _pooled(rows: Sequence[dict], num: str) -> float:
    """Pooled overlap over rows: Dice = 2 sum(I) / sum(|P| + |G|); IoU = sum(I) / sum(|P| + |G| - I)."""
    inter = sum(r["intersection"] for r in rows)
    sizes = sum(r["pred_pixels"] + r["gt_pixels"] for r in rows)
    if num == "dice":
        return 2.0 * inter / sizes if sizes > 0 else float("nan")
    union = sizes - inter
    return inter / union if union > 0 else float("nan")


def _summary_of(rows: Sequence[dict]) -> dict[str, float]:
    """Means, pooled overlaps and empty-mask counts of one group of rows (unsuffixed keys)."""
    out: dict[str, float] = {
        "dice": _nanmean([r["dice"] for r in rows]),
        "dice_pooled": _pooled(rows, "dice"),
        "iou": _nanmean([r["iou"] for r in rows]),
        "iou_pooled": _pooled(rows, "iou"),
    }
    for unit in ("mm", "px"):
        sub = [r for r in rows if r["distance_unit"] == unit]
        if sub:
            out[f"hd95_{unit}"] = _nanmean([r["hd95"] for r in sub])
            out[f"assd_{unit}"] = _nanmean([r["assd"] for r in sub])
    empty_gt = [r["gt_pixels"] == 0 for r in rows]
    empty_pred = [r["pred_pixels"] == 0 for r in rows]
    out["n_images"] = len(rows)
    out["n_empty_pred"] = sum(p and not g for p, g in zip(empty_pred, empty_gt))
    out["n_empty_gt"] = sum(g and not p for p, g in zip(empty_pred, empty_gt))
    out["n_both_empty"] = sum(p and g for p, g in zip(empty_pred, empty_gt))
    out["n_distance_undefined"] = sum(math.isnan(r["hd95"]) or math.isinf(r["hd95"]) for r in rows)
    return out


def summarize(rows: Sequence[dict], class_names: Sequence[str]) -> dict[str, float]:
    """Summary metrics of a set of rows (see module docstring for the conventions).

    Keys are ``{metric}`` over all labelled frames, ``{metric}_ED`` / ``{metric}_ES`` over the ED / ES frames and
    ``{metric}_EDES`` over both (the papers' "mDice" when other frames are labelled too, as in CAMUS 2023),
    where metric is ``dice``, ``dice_pooled``, ``iou``, ``iou_pooled``, ``hd95_mm``, ``assd_mm`` (frames with known
    spacing), ``hd95_px``, ``assd_px`` (frames without), ``n_images`` (frame-class pairs), ``n_empty_pred``,
    ``n_empty_gt``, ``n_both_empty``, ``n_distance_undefined``. With more than one class, the same keys are repeated
    per class with a ``{class_name}/`` prefix; the unprefixed keys then average over classes (pooled ones pool them).

    Args:
        rows: dicts with the fields of `ROW_FIELDS`.
        class_names: names of the scored classes, in label order.

    Returns:
        flat dict of floats (counts as ints); empty when there are no rows.
    """
    out: dict[str, float] = {}
    if not rows:
        return out
    prefixes: list[tuple[str, list[dict]]] = [("", list(rows))]
    if len(class_names) > 1:
        prefixes += [(f"{name}/", [r for r in rows if r["class_name"] == name]) for name in class_names]
    for prefix, group in prefixes:
        for suffix, phases in (("", None), ("_ED", ("ED",)), ("_ES", ("ES",)), ("_EDES", ("ED", "ES"))):
            sub = group if phases is None else [r for r in group if r["phase"] in phases]
            if not sub:
                continue
            for key, value in _summary_of(sub).items():
                out[f"{prefix}{key}{suffix}"] = value
    return out


def _gather_rows(rows: list[dict]) -> list[dict]:
    """All ranks' rows on every rank (torch.distributed), without the duplicates a padding sampler adds."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return rows
    world = torch.distributed.get_world_size()
    if world == 1:
        return rows
    parts: list[list[dict] | None] = [None] * world
    torch.distributed.all_gather_object(parts, rows)
    seen: set[tuple] = set()
    merged = []
    for part in parts:
        for row in part or []:
            key = (row["case_id"], row["frame"], row["class_name"])
            if key not in seen:
                seen.add(key)
                merged.append(row)
    return merged


class SegmentationMetrics:
    """Accumulates rows over batches (MONAI Cumulative style: call, `aggregate`, `reset`), syncing across ranks.

    Args:
        class_names: names of the C foreground classes, in label order (label id i is ``class_names[i - 1]``).
        distances: compute HD95 and ASSD; when False they are NaN (faster validation).
    """

    def __init__(self, class_names: Sequence[str], distances: bool = True) -> None:
        self.class_names = tuple(class_names)
        self.scorer = FrameScorer(len(self.class_names), distances=distances)
        self._rows: list[dict] = []

    def __call__(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        spacing: torch.Tensor | None,
        case_ids: Sequence[str],
        frames: Sequence[int],
        phases: Sequence[Phase | str],
        datasets: Sequence[str] | None = None,
        views: Sequence[str] | None = None,
    ) -> list[dict]:
        """Score N labelled frames and buffer their rows.

        Args:
            pred: [N, H, W] int predicted label ids in 0..C.
            target: [N, H, W] int ground-truth label ids in 0..C.
            spacing: [N, 2] float mm per pixel (row, col), NaN when unknown; or None (all unknown).
            case_ids: N case ids (clip ids).
            frames: N frame indices within the clip.
            phases: N phases (`Phase` or its value).
            datasets: N data set names (optional).
            views: N view names (optional).

        Returns:
            the new rows (one per frame and class).
        """
        n = pred.shape[0]
        if not (len(case_ids) == len(frames) == len(phases) == n):
            raise ValueError(f"need {n} case_ids, frames and phases, got {len(case_ids)}, {len(frames)}, {len(phases)}")
        scores = self.scorer(pred, target, spacing)
        new = []
        for i in range(n):
            for c, name in enumerate(self.class_names):
                new.append(
                    {
                        "case_id": str(case_ids[i]),
                        "dataset": "" if datasets is None else str(datasets[i]),
                        "view": "" if views is None else str(views[i]),
                        "frame": int(frames[i]),
                        "phase": Phase(phases[i]).value,
                        "class_name": name,
                        "dice": float(scores["dice"][i, c]),
                        "iou": float(scores["iou"][i, c]),
                        "hd95": float(scores["hd95"][i, c]),
                        "assd": float(scores["assd"][i, c]),
                        "distance_unit": "mm" if scores["in_mm"][i] else "px",
                        "gt_pixels": int(scores["gt_pixels"][i, c]),
                        "pred_pixels": int(scores["pred_pixels"][i, c]),
                        "intersection": int(scores["intersection"][i, c]),
                    }
                )
        self._rows.extend(new)
        return new

    def rows(self, sync: bool = True) -> list[dict]:
        """The buffered rows (of all ranks when ``sync`` and torch.distributed is initialised)."""
        return _gather_rows(self._rows) if sync else list(self._rows)

    def aggregate(self, sync: bool = True) -> dict[str, float]:
        """Summary over all buffered rows; keys as in `summarize`."""
        return summarize(self.rows(sync=sync), self.class_names)

    def reset(self) -> None:
        """Drop the buffered rows."""
        self._rows = []


def _json_safe(value: Any) -> Any:
    """NaN and inf become None (JSON has no NaN); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_report(
    out_dir: str | Path, summary: dict, rows: Sequence[dict], info: dict | None = None
) -> tuple[Path, Path]:
    """Write ``metrics.json`` (summary) and ``per_case.csv`` (one row per labelled frame and class) into ``out_dir``.

    ``metrics.json`` holds ``{"summary": {...summarize keys...}, "info": {...}}``, NaN written as null; ``info``
    carries context (class names, number of cases, checkpoint, units note). ``per_case.csv`` has the columns of
    `ROW_FIELDS`; NaN cells are empty.

    Args:
        out_dir: folder (created if missing).
        summary: output of `summarize`.
        rows: output of `SegmentationMetrics.rows`.
        info: extra context for ``metrics.json``.

    Returns:
        (path of metrics.json, path of per_case.csv).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / "metrics.json", out / "per_case.csv"
    payload = {"summary": _json_safe(dict(summary)), "info": _json_safe(dict(info or {}))}
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(ROW_FIELDS), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()})
    logger.info("wrote %s and %s", json_path, csv_path)
    return json_path, csv_path
