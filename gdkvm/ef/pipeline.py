"""``compute_ef``: label masks of a clip (or an A4C + A2C pair) -> beats -> per-beat EDV/ESV/EF -> summary."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from gdkvm.ef.beats import BeatFrames, detect_beats
from gdkvm.ef.camus_official import camus_biplane
from gdkvm.ef.geometry import Structure, lv_areas, resolve_spacing
from gdkvm.ef.report import Beat, EFReport, summarize
from gdkvm.ef.volumes import ML, RELATIVE, Method, ejection_fraction, lv_volume

__all__ = ["compute_ef"]

logger = logging.getLogger(__name__)

# (ED value, ES value, EF) for one beat; raises ValueError when the frames cannot be measured.
_PairFn = Callable[[int, int, int | None, int | None], tuple[float, float, float]]


def _check_masks(masks: np.ndarray, name: str) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"{name} must be a label volume [T, H, W], got shape {masks.shape}")
    if np.issubdtype(masks.dtype, np.integer) or np.issubdtype(masks.dtype, np.bool_):
        return masks  # no copy: a long DICOM clip's label volume can be large
    if not np.array_equal(masks, np.round(masks)):
        raise ValueError(f"{name} must hold integer label ids, got non-integer values")
    return masks.astype(np.int64)


def _frame(masks: np.ndarray, t: int, lv_label: int, view: str) -> np.ndarray:
    frame = masks[t]
    lv = frame == lv_label
    if not lv.any():
        raise ValueError(f"empty LV mask in {view} frame {t}")
    if lv[0].any() or lv[-1].any() or lv[:, 0].any() or lv[:, -1].any():
        raise ValueError(f"LV touches the image border in {view} frame {t} (cut by the image edge)")
    return frame


def _beat_frames(
    masks: np.ndarray, spacing, fps: float | None, ed_es: tuple[int, int] | None, lv_label: int, view: str, **kw
) -> list[BeatFrames]:
    if ed_es is None:
        return detect_beats(lv_areas(masks, label=lv_label, spacing=spacing), fps, **kw)
    ed, es = (int(i) for i in ed_es)
    for t in (ed, es):
        if not 0 <= t < len(masks):
            raise ValueError(f"{view} frame {t} is outside the clip (0..{len(masks) - 1})")
    if ed == es:
        raise ValueError(f"{view} ED and ES are the same frame ({ed})")
    return [BeatFrames(ed=ed, es=es, amplitude=float("nan"))]


def _score(bf: BeatFrames, pair: _PairFn, a2c: BeatFrames | None, min_ef: float, max_ef: float) -> Beat:
    kw = {"ed_a2c": None if a2c is None else a2c.ed, "es_a2c": None if a2c is None else a2c.es}
    try:
        edv, esv, ef = pair(bf.ed, bf.es, kw["ed_a2c"], kw["es_a2c"])
    except ValueError as err:
        return Beat(bf.ed, bf.es, None, None, None, False, bf.reason or str(err), bf.amplitude, **kw)
    reason = bf.reason if bf.reason is not None else (a2c.reason if a2c is not None else None)
    if reason is None and not min_ef <= ef <= max_ef:
        reason = f"implausible EF {ef:.1f} % (outside {min_ef:g}-{max_ef:g} %)"
    return Beat(bf.ed, bf.es, edv, esv, ef, reason is None, reason, bf.amplitude, **kw)


def _pair_beats(frames4: list[BeatFrames], frames2: list[BeatFrames]) -> list[tuple[BeatFrames, BeatFrames | None]]:
    """Pair the k-th valid A4C beat with the k-th valid A2C beat (the views are not simultaneous)."""
    valid2 = [b for b in frames2 if b.reason is None]
    out, k = [], 0
    for b in frames4:
        if b.reason is None and k < len(valid2):
            out.append((b, valid2[k]))
            k += 1
        elif b.reason is None:
            out.append((BeatFrames(b.ed, b.es, b.amplitude, "no matching A2C beat"), None))
        else:
            out.append((b, None))
    return out


def _pair_fn(masks: np.ndarray, a2c: np.ndarray | None, method: Method, spacing, spacing_a2c, lv_label: int) -> _PairFn:
    """(ED value, ES value, EF) of one beat from its A4C frames and, with ``a2c``, its A2C frames."""

    def pair(ed: int, es: int, ed2: int | None, es2: int | None) -> tuple[float, float, float]:
        f = [_frame(masks, ed, lv_label, "A4C"), _frame(masks, es, lv_label, "A4C")]
        if a2c is not None:
            if ed2 is None or es2 is None:
                raise ValueError("no matching A2C beat")
            f += [_frame(a2c, ed2, lv_label, "A2C"), _frame(a2c, es2, lv_label, "A2C")]
        if method is Method.CAMUS:
            res = camus_biplane(f[0], f[1], f[2], f[3], spacing, spacing_a2c, lv_label=lv_label)
            return res.edv, res.esv, res.ef
        kw = {"method": method, "spacing_a2c": spacing_a2c, "lv_label": lv_label}
        edv = lv_volume(f[0], spacing, labels_a2c=f[2] if a2c is not None else None, **kw).value
        esv = lv_volume(f[1], spacing, labels_a2c=f[3] if a2c is not None else None, **kw).value
        return edv, esv, ejection_fraction(edv, esv)

    return pair


def compute_ef(
    masks: np.ndarray,
    *,
    spacing: tuple[float, float] | None = None,
    fps: float | None = None,
    method: Method | str | None = None,
    masks_a2c: np.ndarray | None = None,
    spacing_a2c: tuple[float, float] | None = None,
    fps_a2c: float | None = None,
    ed_es: tuple[int, int] | None = None,
    ed_es_a2c: tuple[int, int] | None = None,
    lv_label: int = Structure.LV,
    min_ef: float = 5.0,
    max_ef: float = 90.0,
    max_heart_rate: float = 200.0,
) -> EFReport:
    """EF of a clip, beat by beat.

    Args:
        masks: [T, H, W] integer label map of the A4C (or only) clip.
        spacing: (row, col) mm per pixel; None/NaN gives relative volumes.
        fps: frame rate, needed unless ``ed_es`` is given.
        method: ``discs``, ``area-length``, ``biplane`` or ``camus``; default biplane with two views, else discs.
        masks_a2c: [T2, H2, W2] A2C label map (biplane), or None.
        spacing_a2c: its spacing; fps_a2c: its frame rate (default ``fps``).
        ed_es: explicit (ED, ES) frame indices (a half beat, e.g. a CAMUS half sequence); skips detection.
        ed_es_a2c: the same for the A2C clip.
        lv_label: LV label id.
        min_ef, max_ef: plausible EF range in percent; beats outside are rejected.
        max_heart_rate: beats per minute, for the minimum spacing of ES frames.

    Returns:
        the EFReport (beats with EDV/ESV/EF, rejected beats with their reason, summary).

    Raises:
        ValueError: bad shapes, unknown frame rate, a missing A2C view for a biplane method.
        NoBeatFoundError: no beat in the area curve.
    """
    masks = _check_masks(masks, "masks")
    two = masks_a2c is not None
    method = Method(method if method is not None else (Method.BIPLANE if two else Method.DISCS))
    if method.needs_two_views and not two:
        raise ValueError(f"the {method.value} method needs the A2C view as well")
    a2c = _check_masks(masks_a2c, "masks_a2c") if two else None
    frames4 = _beat_frames(masks, spacing, fps, ed_es, lv_label, "A4C", max_heart_rate=max_heart_rate)
    units = {resolve_spacing(spacing)[1]} | ({resolve_spacing(spacing_a2c)[1]} if two else set())
    if len(units) > 1:
        raise ValueError("the A4C and A2C spacings must both be known or both unknown")
    unit = ML if units == {"mm"} else RELATIVE

    use_a2c = two and method is not Method.DISCS
    pair = _pair_fn(masks, a2c if use_a2c else None, method, spacing, spacing_a2c, lv_label)
    if use_a2c:
        fps2 = fps if fps_a2c is None else fps_a2c
        frames2 = _beat_frames(a2c, spacing_a2c, fps2, ed_es_a2c, lv_label, "A2C", max_heart_rate=max_heart_rate)
        pairs = _pair_beats(frames4, frames2)
    else:
        pairs = [(b, None) for b in frames4]
    beats = [_score(b, pair, b2, min_ef, max_ef) for b, b2 in pairs]
    notes = [] if unit == ML else ["spacing unknown: volumes are in relative units (EF is still valid)"]
    if two and not use_a2c:
        notes.append("single-plane method: the A2C view was not used")
    return EFReport(
        method=method.value,
        unit=unit,
        views="A4C+A2C" if use_a2c else "A4C",
        beats=beats,
        summary=summarize(beats),
        fps=None if ed_es is not None else fps,
        beat_source="given" if ed_es is not None else "detected",
        areas=lv_areas(masks, label=lv_label, spacing=spacing).tolist(),
        notes=notes,
    )
