"""LV volumes from masks: method of discs (single plane, biplane) and area-length; EF from a volume pair.

Formulas (reference/echo-data-and-ef.md section 3.1), with ``d_i`` the LV width at the centre of the i-th of 20
equal slabs of the long axis ``L`` (midpoint rule: exact to ~0.1 % on an ellipse, where the left-end levels of the
official CAMUS script overestimate a half ellipsoid by ~4 %):

- single-plane discs: ``V = pi/4 * sum(d_i^2) * L/20``
- biplane discs: ``V = pi/4 * sum(a_i * b_i) * L/20``, ``a_i``/``b_i`` from A4C/A2C at the same normalised level,
  ``L`` the longer of the two long axes (ASE)
- area-length: ``V = 8 A^2 / (3 pi L)``; biplane ``V = 8 A1 A2 / (3 pi L)`` with the shorter ``L`` (the usual
  convention)

Volumes are in mL when the spacing is known (mm per pixel) and in cubic pixels (relative units; EF stays valid
because the scale cancels) otherwise. The official CAMUS biplane variant is ``gdkvm.ef.camus_official``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from gdkvm.ef.geometry import N_DISCS, LVGeometry, Structure, lv_geometry

__all__ = [
    "ML",
    "RELATIVE",
    "Method",
    "Volume",
    "ejection_fraction",
    "lv_volume",
    "volume_area_length",
    "volume_area_length_biplane",
    "volume_biplane",
    "volume_discs",
]

ML = "mL"
RELATIVE = "px^3 (relative)"


class Method(str, enum.Enum):
    """Volume methods. ``CAMUS`` is the official CAMUS biplane script (see ``gdkvm.ef.camus_official``)."""

    DISCS = "discs"
    BIPLANE = "biplane"
    AREA_LENGTH = "area-length"
    CAMUS = "camus"

    @property
    def needs_two_views(self) -> bool:
        return self in (Method.BIPLANE, Method.CAMUS)


@dataclass(frozen=True)
class Volume:
    """One LV volume.

    Attributes:
        value: the volume in ``unit``.
        unit: ``"mL"`` or ``"px^3 (relative)"``.
        method: the Method value used.
        length: long-axis length used (mm or px).
    """

    value: float
    unit: str
    method: str
    length: float


def _unit(*geoms: LVGeometry) -> tuple[str, float]:
    units = {g.unit for g in geoms}
    if len(units) != 1:
        raise ValueError("the two views must both have a known spacing or both be in pixels")
    return (ML, 1e-3) if units == {"mm"} else (RELATIVE, 1.0)


def volume_discs(geom: LVGeometry) -> float:
    """Single-plane method of discs, ``pi/4 * sum(d_i^2) * L/n`` (in geometry units cubed)."""
    n = len(geom.diameters)
    return float(math.pi / 4.0 * np.sum(geom.diameters**2) * geom.length / n)


def volume_biplane(geom_a4c: LVGeometry, geom_a2c: LVGeometry) -> float:
    """Biplane method of discs, ``pi/4 * sum(a_i * b_i) * max(L4, L2)/n`` (in geometry units cubed)."""
    if len(geom_a4c.diameters) != len(geom_a2c.diameters):
        raise ValueError("both views need the same number of discs")
    n = len(geom_a4c.diameters)
    length = max(geom_a4c.length, geom_a2c.length)
    return float(math.pi / 4.0 * np.sum(geom_a4c.diameters * geom_a2c.diameters) * length / n)


def volume_area_length(geom: LVGeometry) -> float:
    """Single-plane area-length, ``8 A^2 / (3 pi L)``."""
    if geom.length <= 0:
        return 0.0
    return float(8.0 * geom.area**2 / (3.0 * math.pi * geom.length))


def volume_area_length_biplane(geom_a4c: LVGeometry, geom_a2c: LVGeometry) -> float:
    """Biplane area-length, ``8 A1 A2 / (3 pi min(L1, L2))``."""
    length = min(geom_a4c.length, geom_a2c.length)
    if length <= 0:
        return 0.0
    return float(8.0 * geom_a4c.area * geom_a2c.area / (3.0 * math.pi * length))


def lv_volume(
    labels: np.ndarray,
    spacing: tuple[float, float] | None = None,
    *,
    method: Method | str = Method.DISCS,
    labels_a2c: np.ndarray | None = None,
    spacing_a2c: tuple[float, float] | None = None,
    lv_label: int = Structure.LV,
    n_discs: int = N_DISCS,
) -> Volume:
    """LV volume of one frame (A4C, plus A2C at the same instant for the biplane methods).

    Args:
        labels: [H, W] A4C (or the single view's) label map.
        spacing: (row, col) mm per pixel or None/NaN (relative units).
        method: ``discs``, ``area-length``, or ``biplane`` (needs ``labels_a2c``). With an A2C frame,
            ``area-length`` becomes the biplane area-length. ``camus`` needs ED and ES together: use
            ``gdkvm.ef.camus_official.camus_biplane``.
        labels_a2c: [H2, W2] A2C label map or None.
        spacing_a2c: its spacing.
        lv_label: LV label id.
        n_discs: number of discs.

    Returns:
        the Volume.

    Raises:
        ValueError: empty LV, a missing A2C view for biplane, or mixed units.
    """
    method = Method(method)
    if method is Method.CAMUS:
        raise ValueError("the camus method scores an ED/ES pair: use gdkvm.ef.camus_official.camus_biplane")
    if method is Method.BIPLANE and labels_a2c is None:
        raise ValueError("the biplane method needs the A2C view")
    g4 = lv_geometry(labels, spacing, lv_label=lv_label, n_discs=n_discs)
    g2 = None if labels_a2c is None else lv_geometry(labels_a2c, spacing_a2c, lv_label=lv_label, n_discs=n_discs)
    unit, scale = _unit(g4) if g2 is None else _unit(g4, g2)
    if method is Method.DISCS:
        value, length = volume_discs(g4), g4.length
    elif method is Method.AREA_LENGTH and g2 is None:
        value, length = volume_area_length(g4), g4.length
    elif method is Method.AREA_LENGTH:
        value, length = volume_area_length_biplane(g4, g2), min(g4.length, g2.length)
    else:
        value, length = volume_biplane(g4, g2), max(g4.length, g2.length)
    return Volume(value=value * scale, unit=unit, method=method.value, length=length)


def ejection_fraction(edv: float, esv: float) -> float:
    """EF in percent, ``100 * (EDV - ESV) / EDV``.

    Raises:
        ValueError: EDV not positive.
    """
    if not edv > 0:
        raise ValueError(f"EDV must be positive, got {edv}")
    return 100.0 * (edv - esv) / edv
