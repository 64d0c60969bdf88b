"""The official CAMUS biplane EF (the script that produced the 2023 release's cfg ``EF``), quirks included.

Steps (reference/echo-data-and-ef.md section 3.2), per view and instant:

1. binary LV mask, resampled to isotropic pixels of ``min(spacing)`` with nearest neighbour;
2. the 0.5 contour; the mitral base is the longest chord between contour points ``j < i`` that points from ``i``
   to ``j`` within 45 degrees of the +column direction and whose intermediate contour points ``j+1 .. i-1`` all lie
   within 8 px of the (infinite) line through them; the base midpoint is contour index ``j + round((i - j) / 2)``;
3. apex = the contour point farthest from the base midpoint; the long axis joins them;
4. 20 diameters at fractions 0, 0.05, ..., 0.95 of the axis (left end points, not slab centres); each half-width
   starts at 8 px and grows in 0.5 px steps until the rounded position leaves the mask or the image;
5. one disc height for all four volumes: the largest of the four ``L/20``; volumes rounded to integer mL;
   ``EF = round(100 * (EDV - ESV) / EDV)`` from the rounded volumes (Python rounding, half to even).

Our contour comes from our own marching squares (started at the top-most point, clockwise on screen), the largest
component's outer contour, where the script takes the first contour scikit-image returns; on a clean single-blob
mask the two agree up to the start index. The shared disc height inflates ESV against ASE practice; use this method
to match the data set's reference EF, and ``biplane`` for the textbook volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from gdkvm.ef.contour import largest_component, outer_contour
from gdkvm.ef.geometry import Structure, resolve_spacing

__all__ = ["CamusEF", "camus_biplane", "camus_diameters"]

_N = 20
_BASE_TOL_PX = 8.0
_START_PX = 8.0
_STEP_PX = 0.5


@dataclass(frozen=True)
class CamusEF:
    """Result of the official CAMUS biplane script.

    Attributes:
        edv: ED volume, integer mL (or relative units when a spacing is unknown).
        esv: ES volume, same unit.
        ef: integer EF in percent.
        step: the shared disc height (mm or px).
        unit: "mL" or "px^3 (relative)".
    """

    edv: float
    esv: float
    ef: float
    step: float
    unit: str


def _isotropic(mask: np.ndarray, sp: np.ndarray) -> tuple[np.ndarray, float]:
    iso = float(sp.min())
    zoom = sp / iso
    if np.allclose(zoom, 1.0):
        return mask, iso
    return ndimage.zoom(mask.astype(np.uint8), zoom, order=0) > 0, iso


def _base_indices(contour: np.ndarray) -> tuple[int, int]:
    """(i, j), j < i: the longest qualifying base chord (ties: the first in the script's loop order)."""
    n = len(contour)
    i_idx, j_idx = np.tril_indices(n, k=-1)
    keep = i_idx >= 2
    i_idx, j_idx = i_idx[keep], j_idx[keep]
    delta = contour[j_idx] - contour[i_idx]
    ok = np.abs(np.degrees(np.arctan2(delta[:, 0], delta[:, 1]))) <= 45.0
    i_idx, j_idx, delta = i_idx[ok], j_idx[ok], delta[ok]
    length = np.linalg.norm(delta, axis=1)
    # Necessary condition, vectorised: a few intermediate points per chord must already be within tolerance.
    keep = np.ones(len(i_idx), dtype=bool)
    for q in np.linspace(0.1, 0.9, 9):
        k = np.clip(j_idx + np.rint(q * (i_idx - j_idx)).astype(int), j_idx + 1, np.maximum(i_idx - 1, j_idx + 1))
        rel = contour[j_idx] - contour[np.minimum(k, n - 1)]
        dev = np.abs(delta[:, 0] * rel[:, 1] - delta[:, 1] * rel[:, 0]) / np.maximum(length, 1e-12)
        keep &= (dev <= _BASE_TOL_PX) | (i_idx - j_idx < 2)
    i_idx, j_idx, delta, length = i_idx[keep], j_idx[keep], delta[keep], length[keep]
    order = np.lexsort((j_idx, i_idx, -length))
    for k in order:
        i, j = int(i_idx[k]), int(j_idx[k])
        inner = contour[j + 1 : i]
        if inner.size:
            d = delta[k]
            rel = contour[j] - inner
            dev = np.abs(d[0] * rel[:, 1] - d[1] * rel[:, 0]) / length[k]
            if dev.max() > _BASE_TOL_PX:
                continue
        return i, j
    raise ValueError("no mitral base found (no contour chord within 45 degrees of horizontal)")


def _half_width(mask: np.ndarray, point: np.ndarray, normal: np.ndarray) -> float:
    h, w = mask.shape
    dists = _START_PX + _STEP_PX * np.arange(int(2 * (h + w) / _STEP_PX) + 2)
    pos = np.round(point[None, :] + dists[:, None] * normal[None, :]).astype(int)
    out = (pos[:, 0] < 0) | (pos[:, 0] >= h) | (pos[:, 1] < 0) | (pos[:, 1] >= w)
    stop = out.copy()
    inside = ~out
    stop[inside] = ~mask[pos[inside, 0], pos[inside, 1]]
    return float(dists[int(np.argmax(stop))])


def camus_diameters(
    labels: np.ndarray, spacing: tuple[float, float] | None, *, lv_label: int = Structure.LV
) -> tuple[np.ndarray, float]:
    """The script's 20 diameters and disc height ``L/20`` of one frame.

    Args:
        labels: [H, W] label map or binary LV mask.
        spacing: (row, col) mm per pixel, or None/NaN for pixel units.
        lv_label: LV label id.

    Returns:
        ([20] diameters, step), both in mm (or px).

    Raises:
        ValueError: empty LV or no base found.
    """
    sp, _ = resolve_spacing(spacing)
    mask = largest_component(np.asarray(labels) == lv_label)
    if not mask.any():
        raise ValueError("empty LV mask")
    mask, iso = _isotropic(mask, sp)
    contour = outer_contour(mask)
    i, j = _base_indices(contour)
    mid = contour[j + round((i - j) / 2)]
    dist = np.linalg.norm(contour - mid, axis=1)
    apex = contour[int(np.argmax(dist))]
    direction = apex - mid
    length = float(np.linalg.norm(direction))
    if length == 0:
        raise ValueError("degenerate LV (zero long axis)")
    normal = np.array([-direction[1], direction[0]]) / length
    diameters = np.array(
        [
            _half_width(mask, mid + f * direction, normal) + _half_width(mask, mid + f * direction, -normal)
            for f in np.linspace(0.0, 1.0, _N, endpoint=False)
        ]
    )
    return diameters * iso, length * iso / _N


def camus_biplane(
    a4c_ed: np.ndarray,
    a4c_es: np.ndarray,
    a2c_ed: np.ndarray,
    a2c_es: np.ndarray,
    spacing_a4c: tuple[float, float] | None,
    spacing_a2c: tuple[float, float] | None,
    *,
    lv_label: int = Structure.LV,
) -> CamusEF:
    """EDV, ESV and EF exactly as the official CAMUS script computes them.

    Args:
        a4c_ed, a4c_es: [H, W] A4C label maps at ED and ES.
        a2c_ed, a2c_es: [H2, W2] A2C label maps at ED and ES.
        spacing_a4c, spacing_a2c: (row, col) mm per pixel of each view (None/NaN: pixels; both must agree).
        lv_label: LV label id.

    Returns:
        the CamusEF (integer volumes and EF).

    Raises:
        ValueError: an empty LV, no base, mixed units, or EDV of 0.
    """
    units = {resolve_spacing(spacing_a4c)[1], resolve_spacing(spacing_a2c)[1]}
    if len(units) != 1:
        raise ValueError("the two views must both have a known spacing or both be in pixels")
    scale, unit = (1e-3, "mL") if units == {"mm"} else (1.0, "px^3 (relative)")
    d4ed, s4ed = camus_diameters(a4c_ed, spacing_a4c, lv_label=lv_label)
    d4es, s4es = camus_diameters(a4c_es, spacing_a4c, lv_label=lv_label)
    d2ed, s2ed = camus_diameters(a2c_ed, spacing_a2c, lv_label=lv_label)
    d2es, s2es = camus_diameters(a2c_es, spacing_a2c, lv_label=lv_label)
    step = max(s4ed, s4es, s2ed, s2es)
    edv = round(math.pi / 4.0 * float(np.sum(d4ed * d2ed)) * step * scale)
    esv = round(math.pi / 4.0 * float(np.sum(d4es * d2es)) * step * scale)
    if edv <= 0:
        raise ValueError("EDV rounds to 0")
    ef = round(100.0 * (edv - esv) / edv)
    return CamusEF(edv=float(edv), esv=float(esv), ef=float(ef), step=step, unit=unit)
