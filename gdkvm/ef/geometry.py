"""LV geometry from label masks: area, contour, mitral base, apex, long axis and disc diameters.

All functions are pure numpy. Points are ``(row, col)``. Lengths come in millimetres when a spacing (mm per pixel,
row and col) is given and in pixels otherwise; anisotropic pixels are handled by working in physical coordinates
and looking the mask up at the nearest pixel.

Mitral base rules (``LVGeometry.base_rule`` says which one was used):

- ``"la"``: the LV contour points within 1.5 pixels of the left atrium (CAMUS label 3), together with every LV
  contour point within 1.5 pixels of the straight line fitted through them (an LA narrower than the base touches
  only its middle); the base points are the two of them farthest apart (the annulus, where LV, LA and myocardium
  meet).
- ``"myocardium"``: without an LA label but with a myocardium label (2), the LV contour points *not* next to the
  myocardium form the open basal side; extended along their line and the farthest pair taken, as above.
- ``"geometric"``: masks with the LV only. The base is the longest chord that is within 45 degrees of the image
  rows, at least a quarter of the LV's column extent long, and whose shorter contour arc stays within
  ``max(1 px, 3 % of the chord)`` of it (the flat basal side). This assumes the usual apical orientation (base
  roughly horizontal). A shape without such a flat side (an ellipse) gets a point base: its bottom-most contour
  point (the apex is up in CAMUS and EchoNet images).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from gdkvm.ef.contour import largest_component, outer_contour

__all__ = [
    "N_DISCS",
    "LVGeometry",
    "Structure",
    "apex_point",
    "disc_diameters",
    "lv_areas",
    "lv_geometry",
    "mitral_base",
    "resolve_spacing",
]

logger = logging.getLogger(__name__)

N_DISCS = 20


class Structure(enum.IntEnum):
    """CAMUS label ids (EchoNet masks use only ``LV``)."""

    BACKGROUND = 0
    LV = 1
    MYOCARDIUM = 2
    LA = 3


@dataclass(frozen=True)
class LVGeometry:
    """The LV of one frame, in physical units (mm) or pixels (see ``unit``).

    Attributes:
        contour: [N, 2] (row, col) outer LV contour, clockwise on screen.
        base: [2, 2] the two mitral annulus points.
        base_mid: [2] midpoint of the base.
        apex: [2] contour point farthest from ``base_mid``.
        length: long-axis length ``|apex - base_mid|``.
        diameters: [N_DISCS] LV width perpendicular to the long axis at the disc centres.
        area: LV area (pixel count times pixel area).
        base_rule: "la", "myocardium" or "geometric".
        unit: "mm" or "px".
    """

    contour: np.ndarray
    base: np.ndarray
    base_mid: np.ndarray
    apex: np.ndarray
    length: float
    diameters: np.ndarray
    area: float
    base_rule: str
    unit: str


def resolve_spacing(spacing: tuple[float, float] | np.ndarray | None) -> tuple[np.ndarray, str]:
    """Spacing to use and its unit: the given (row, col) mm, or (1, 1) px when unknown (None or NaN).

    Returns:
        ([2] float64 spacing, "mm" or "px").

    Raises:
        ValueError: a spacing that is not positive.
    """
    if spacing is None:
        return np.ones(2), "px"
    sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if sp.shape != (2,):
        raise ValueError(f"spacing must be (row, col), got shape {sp.shape}")
    if np.isnan(sp).any():
        return np.ones(2), "px"
    if not (np.isfinite(sp).all() and (sp > 0).all()):
        raise ValueError(f"spacing must be positive and finite, got {sp.tolist()}")
    return sp, "mm"


def lv_areas(masks: np.ndarray, *, label: int = Structure.LV, spacing: tuple[float, float] | None = None) -> np.ndarray:
    """LV area per frame: pixel count of ``label`` times the pixel area.

    Args:
        masks: [T, H, W] (or [H, W]) integer label map.
        label: the LV label id.
        spacing: (row, col) mm per pixel; None or NaN gives pixel counts.

    Returns:
        [T] float64 areas in mm^2 (or px^2); a scalar array for a single frame.
    """
    masks = np.asarray(masks)
    sp, _ = resolve_spacing(spacing)
    return (masks == label).sum(axis=(-2, -1)).astype(np.float64) * float(sp[0] * sp[1])


def _farthest_pair(points: np.ndarray) -> tuple[int, int]:
    d = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)
    i, j = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(i), int(j)


def _near_label(contour_px: np.ndarray, labels: np.ndarray, label: int, radius_px: float) -> np.ndarray:
    """[N] bool: contour points within ``radius_px`` pixels of any pixel of ``label``."""
    dist = ndimage.distance_transform_edt(labels != label)
    hi = np.array(labels.shape) - 1
    best = np.full(len(contour_px), np.inf)
    for rnd_r in (np.floor, np.ceil):  # a contour point lies between pixel centres: take the nearest of the four
        for rnd_c in (np.floor, np.ceil):
            r = np.clip(rnd_r(contour_px[:, 0]).astype(int), 0, hi[0])
            c = np.clip(rnd_c(contour_px[:, 1]).astype(int), 0, hi[1])
            best = np.minimum(best, dist[r, c])
    return best <= radius_px


def _geometric_base(contour: np.ndarray) -> tuple[int, int]:
    """Indices of the longest near-horizontal chord whose shorter contour arc is flat (see module docstring)."""
    n = len(contour)
    seg = np.linalg.norm(np.diff(contour, axis=0, append=contour[:1]), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)[:-1]])
    perimeter = float(seg.sum())
    i, j = np.triu_indices(n, k=1)
    delta = contour[j] - contour[i]
    chord = np.linalg.norm(delta, axis=1)
    fwd = s[j] - s[i]
    arc = np.minimum(fwd, perimeter - fwd)
    min_chord = 0.25 * float(np.ptp(contour[:, 1]))
    ok = (np.abs(delta[:, 0]) <= np.abs(delta[:, 1])) & (chord >= 0.85 * arc) & (chord >= min_chord)
    cand = np.nonzero(ok)[0]
    for k in cand[np.argsort(-chord[cand], kind="stable")]:
        a, b = int(i[k]), int(j[k])
        inner = contour[a + 1 : b] if fwd[k] <= perimeter - fwd[k] else np.concatenate([contour[b + 1 :], contour[:a]])
        if inner.size == 0:
            return a, b
        d = delta[k] / chord[k]
        dev = np.abs((inner[:, 0] - contour[a, 0]) * d[1] - (inner[:, 1] - contour[a, 1]) * d[0])
        if dev.max() <= max(1.0, 0.03 * chord[k]):
            return a, b
    bottom = int(np.argmax(contour[:, 0]))
    return bottom, bottom


def _extend_along_line(points: np.ndarray, sel: np.ndarray, tol: float) -> np.ndarray:
    """Indices of all contour points within ``tol`` of the line fitted (PCA) through ``points[sel]``.

    An LA narrower than the LV base touches only the middle of the base; the base itself is the whole straight
    stretch of the LV contour along that interface.
    """
    p = points[sel]
    centre = p.mean(axis=0)
    _, _, vt = np.linalg.svd(p - centre, full_matrices=False)
    normal = np.array([-vt[0, 1], vt[0, 0]])
    on_line = np.abs((points - centre) @ normal) <= tol
    return np.union1d(sel, np.nonzero(on_line)[0])


def mitral_base(
    contour_px: np.ndarray, labels: np.ndarray | None, sp: np.ndarray, *, lv_label: int = Structure.LV
) -> tuple[np.ndarray, str]:
    """The two mitral annulus points of an LV contour.

    Args:
        contour_px: [N, 2] LV contour in pixels (row, col).
        labels: [H, W] the full label map (for the LA / myocardium rules) or None.
        sp: [2] (row, col) spacing used for the physical coordinates.
        lv_label: the LV label id (the other structures use the CAMUS ids).

    Returns:
        ([2, 2] base points in physical units, rule name).
    """
    phys = contour_px * sp
    if labels is not None:
        present = set(np.unique(labels).tolist())
        for rule, label, want in (("la", Structure.LA, True), ("myocardium", Structure.MYOCARDIUM, False)):
            if label == lv_label or label not in present:
                continue
            near = _near_label(contour_px, labels, int(label), 1.5)
            sel = np.nonzero(near if want else ~near)[0]
            if len(sel) >= 2:
                sel = _extend_along_line(phys, sel, 1.5 * float(sp.max()))
                a, b = _farthest_pair(phys[sel])
                if np.linalg.norm(phys[sel[a]] - phys[sel[b]]) >= 3.0 * float(sp.max()):
                    return phys[[sel[a], sel[b]]], rule
            logger.debug("base rule %s found no interface; trying the next rule", rule)
    a, b = _geometric_base(phys)
    return phys[[a, b]], "geometric"


def apex_point(contour: np.ndarray, base_mid: np.ndarray) -> np.ndarray:
    """The contour point farthest from the base midpoint.

    Args:
        contour: [N, 2]; base_mid: [2] (same units).

    Returns:
        [2] the apex.
    """
    return contour[int(np.argmax(np.linalg.norm(contour - base_mid, axis=1)))]


def disc_diameters(
    mask: np.ndarray,
    base_mid: np.ndarray,
    apex: np.ndarray,
    sp: np.ndarray,
    *,
    n_discs: int = N_DISCS,
    step_px: float = 0.1,
) -> np.ndarray:
    """LV width perpendicular to the long axis at the centres of ``n_discs`` equal slabs (midpoint rule).

    Along each perpendicular line the mask is sampled at the nearest pixel every ``step_px`` pixel widths; the
    width is the length of the inside run that contains the axis point (or the nearest run).

    Args:
        mask: [H, W] bool LV mask.
        base_mid: [2], apex: [2] physical (row, col).
        sp: [2] (row, col) spacing.
        n_discs: number of discs.
        step_px: sampling step in pixels.

    Returns:
        [n_discs] diameters in physical units.
    """
    axis = apex - base_mid
    length = float(np.linalg.norm(axis))
    if length == 0:
        return np.zeros(n_discs)
    normal = np.array([-axis[1], axis[0]]) / length
    h, w = mask.shape
    half = float(np.hypot(h * sp[0], w * sp[1]))
    step = step_px * float(sp.min())
    t = np.arange(-half, half + step, step)
    out = np.zeros(n_discs)
    for k, f in enumerate((np.arange(n_discs) + 0.5) / n_discs):
        pts = (base_mid + f * axis)[None, :] + t[:, None] * normal[None, :]
        idx = np.rint(pts / sp).astype(int)
        valid = (idx[:, 0] >= 0) & (idx[:, 0] < h) & (idx[:, 1] >= 0) & (idx[:, 1] < w)
        inside = np.zeros(len(t), dtype=bool)
        inside[valid] = mask[idx[valid, 0], idx[valid, 1]]
        if not inside.any():
            continue
        edges = np.diff(np.concatenate([[0], inside.astype(np.int8), [0]]))
        starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
        centre = len(t) // 2
        dist = np.minimum(abs(starts - centre), abs(ends - 1 - centre))
        gap = np.where((starts <= centre) & (ends > centre), 0, dist)
        r = int(np.argmin(gap))
        out[k] = (ends[r] - starts[r]) * step
    return out


def lv_geometry(
    labels: np.ndarray,
    spacing: tuple[float, float] | None = None,
    *,
    lv_label: int = Structure.LV,
    n_discs: int = N_DISCS,
) -> LVGeometry:
    """Contour, mitral base, apex, long axis and disc diameters of the LV in one frame.

    Args:
        labels: [H, W] integer label map (CAMUS ids: the LA and myocardium labels, when present, locate the base)
            or a binary LV mask.
        spacing: (row, col) mm per pixel; None or NaN gives pixel units.
        lv_label: the LV label id.
        n_discs: number of discs for the diameters.

    Returns:
        the LVGeometry.

    Raises:
        ValueError: no LV pixel in the frame.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [H, W], got shape {labels.shape}")
    sp, unit = resolve_spacing(spacing)
    mask = largest_component(labels == lv_label)
    if not mask.any():
        raise ValueError("empty LV mask")
    contour_px = outer_contour(mask)
    other = labels if labels.max() > 1 else None
    base, rule = mitral_base(contour_px, other, sp, lv_label=lv_label)
    base_mid = base.mean(axis=0)
    contour = contour_px * sp
    apex = apex_point(contour, base_mid)
    return LVGeometry(
        contour=contour,
        base=base,
        base_mid=base_mid,
        apex=apex,
        length=float(np.linalg.norm(apex - base_mid)),
        diameters=disc_diameters(mask, base_mid, apex, sp, n_discs=n_discs),
        area=float(mask.sum() * sp[0] * sp[1]),
        base_rule=rule,
        unit=unit,
    )
