"""3D heart model of the synthetic echo generator: a contracting truncated prolate ellipsoid LV, its wall and the LA.

Coordinates (mm) of the heart frame: ``z`` runs along the LV long axis from the apex (``z = 0``) towards the mitral
base (``z = L``); ``x`` and ``y`` span the short axis. The LV cavity at volume fraction ``v`` (volume / EDV) is

    x^2 / a^2 + y^2 / b^2 + (z - c)^2 / c^2 <= 1  and  z <= L = c (1 + f)

an ellipsoid with semi-axes ``a != b`` (elliptical short-axis section, so the 2CH and 4CH planes differ) and ``c``,
apex fixed at the origin, cut by the base plane at ``f c`` above its centre. Its volume has the closed form

    V = pi a b c [(1 + f) - (1 + f^3) / 3].

Contraction scales the short axes by ``k_r`` and the long axis by ``k_l = k_r ** gamma`` (radial shortening larger
than longitudinal), so ``v = k_r ** (2 + gamma)``. A view is a plane through the long axis at angle ``theta`` about
it; its section of the cavity is an ellipse with semi-axes ``a_theta = (cos^2 theta / a^2 + sin^2 theta / b^2)^-1/2``
and ``c``, cut at ``z = L``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LABEL_BACKGROUND = 0
LABEL_LV = 1
LABEL_MYO = 2
LABEL_LA = 3


def _cap_factor(f: float) -> float:
    """``(1 + f) - (1 + f^3) / 3``: volume of the unit ellipsoid cut at ``z = f`` (centre frame) over ``pi``."""
    return (1.0 + f) - (1.0 + f**3) / 3.0


@dataclass(frozen=True)
class Section:
    """The heart cut by one view plane at one instant (all lengths in mm, heart frame ``(u, z)``).

    Attributes:
        lv_u: cavity semi-axis across the plane (``a_theta``).
        lv_c: cavity long semi-axis; the cavity centre is at ``z = lv_c``.
        base: z of the mitral base plane (``L``); the cavity spans ``0 <= z <= base``.
        outer_u: semi-axis across the plane of the epicardial ellipsoid (same centre as the cavity).
        outer_c: long semi-axis of the epicardial ellipsoid.
        la_u: LA semi-axis across the plane.
        la_c: LA long semi-axis.
        la_z: z of the LA centre (the LA occupies only ``z > base``).
    """

    lv_u: float
    lv_c: float
    base: float
    outer_u: float
    outer_c: float
    la_u: float
    la_c: float
    la_z: float

    def labels(self, u: np.ndarray, z: np.ndarray) -> np.ndarray:
        """CAMUS labels (0 bg, 1 LV, 2 myocardium, 3 LA) at points of the plane.

        Args:
            u: [...] float across-plane coordinate (mm).
            z: [...] float long-axis coordinate (mm), 0 at the apex.

        Returns:
            [...] uint8 label ids.
        """
        below_base = z <= self.base
        zc = z - self.lv_c
        lv = below_base & ((u / self.lv_u) ** 2 + (zc / self.lv_c) ** 2 <= 1.0)
        outer = below_base & ((u / self.outer_u) ** 2 + (zc / self.outer_c) ** 2 <= 1.0)
        la = ~below_base & ((u / self.la_u) ** 2 + ((z - self.la_z) / self.la_c) ** 2 <= 1.0)
        out = np.zeros(np.shape(u), dtype=np.uint8)
        out[la] = LABEL_LA
        out[outer] = LABEL_MYO
        out[lv] = LABEL_LV
        return out

    def lv_area(self) -> float:
        """Exact area (mm^2) of the truncated cavity ellipse in this plane."""
        f = self.base / self.lv_c - 1.0
        return self.lv_u * self.lv_c * (math.asin(f) + f * math.sqrt(1.0 - f * f) + math.pi / 2.0)

    def lv_half_width(self, z: np.ndarray) -> np.ndarray:
        """Half width (mm) of the cavity at long-axis positions ``z`` [...] (0 outside ``[0, base]``)."""
        t = np.clip(1.0 - ((np.asarray(z, dtype=np.float64) - self.lv_c) / self.lv_c) ** 2, 0.0, None)
        return np.where(np.asarray(z) <= self.base, self.lv_u * np.sqrt(t), 0.0)


@dataclass(frozen=True)
class HeartShape:
    """End-diastolic geometry of the LV (cavity, wall) and LA, plus how it contracts.

    Attributes:
        a: ED cavity short-axis semi-axis along x (mm).
        b: ED cavity short-axis semi-axis along y (mm), ``b != a``.
        c: ED cavity long semi-axis (mm).
        f: base cut, ``0 < f < 1``: the base plane lies ``f c`` above the ellipsoid centre.
        ef: ejection fraction (%), ``100 (EDV - ESV) / EDV``.
        wall: ED wall thickness at the short axis (mm); the wall thickens as the cavity shrinks.
        wall_apex: ED wall thickness at the apex (mm).
        la_a: LA semi-axis along x (mm) at ED.
        la_b: LA semi-axis along y (mm) at ED.
        la_c: LA long semi-axis (mm) at ED.
        gamma: long-axis scale exponent, ``k_l = k_r ** gamma``.
    """

    a: float
    b: float
    c: float
    f: float
    ef: float
    wall: float = 9.0
    wall_apex: float = 7.0
    la_a: float = 18.0
    la_b: float = 16.0
    la_c: float = 22.0
    gamma: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.f < 1.0:
            raise ValueError(f"base cut f must be in (0, 1), got {self.f}")
        if not 0.0 < self.ef < 100.0:
            raise ValueError(f"EF must be in (0, 100) %, got {self.ef}")

    @property
    def esv_ratio(self) -> float:
        """ESV / EDV."""
        return 1.0 - self.ef / 100.0

    def scales(self, fraction: float) -> tuple[float, float]:
        """Radial and longitudinal scale ``(k_r, k_l)`` at volume fraction ``fraction`` (volume / EDV)."""
        k_r = float(fraction) ** (1.0 / (2.0 + self.gamma))
        return k_r, k_r**self.gamma

    def semi_axes(self, fraction: float = 1.0) -> tuple[float, float, float]:
        """Cavity semi-axes ``(a, b, c)`` in mm at volume fraction ``fraction``."""
        k_r, k_l = self.scales(fraction)
        return self.a * k_r, self.b * k_r, self.c * k_l

    def lv_volume_ml(self, fraction: float = 1.0) -> float:
        """Exact cavity volume (mL) at volume fraction ``fraction`` (closed form of the truncated ellipsoid)."""
        a, b, c = self.semi_axes(fraction)
        return math.pi * a * b * c * _cap_factor(self.f) / 1000.0

    @property
    def edv_ml(self) -> float:
        """True end-diastolic volume (mL)."""
        return self.lv_volume_ml(1.0)

    @property
    def esv_ml(self) -> float:
        """True end-systolic volume (mL)."""
        return self.lv_volume_ml(self.esv_ratio)

    def section(self, theta: float, fraction: float) -> Section:
        """The view plane at angle ``theta`` (rad) about the long axis, at volume fraction ``fraction``."""
        a, b, c = self.semi_axes(fraction)
        thicken = float(fraction) ** -0.4  # the wall thickens in systole
        wall, wall_apex = self.wall * thicken, self.wall_apex * thicken
        cos2, sin2 = math.cos(theta) ** 2, math.sin(theta) ** 2
        lv_u = 1.0 / math.sqrt(cos2 / a**2 + sin2 / b**2)
        outer_u = 1.0 / math.sqrt(cos2 / (a + wall) ** 2 + sin2 / (b + wall) ** 2)
        la_scale = 1.0 + 0.25 * (1.0 - fraction)  # the LA fills while the LV empties
        la_a, la_b, la_c = self.la_a * la_scale, self.la_b * la_scale, self.la_c * la_scale
        la_u = 1.0 / math.sqrt(cos2 / la_a**2 + sin2 / la_b**2)
        base = c * (1.0 + self.f)
        return Section(
            lv_u=lv_u,
            lv_c=c,
            base=base,
            outer_u=outer_u,
            outer_c=c + wall_apex,
            la_u=la_u,
            la_c=la_c,
            la_z=base + 0.7 * la_c,
        )


def volume_fraction(phase: np.ndarray, es_phase: float, esv_ratio: float) -> np.ndarray:
    """LV volume / EDV over the cardiac cycle: ED at phase 0, ES at ``es_phase``, smooth (cosine) in between.

    Args:
        phase: [...] float cycle phase (any real; taken modulo 1).
        es_phase: phase of end-systole, in (0, 1).
        esv_ratio: ESV / EDV.

    Returns:
        [...] float64 volume fraction in ``[esv_ratio, 1]``: exactly 1 at phase 0 and ``esv_ratio`` at ``es_phase``.
    """
    p = np.mod(np.asarray(phase, dtype=np.float64), 1.0)
    systole = p < es_phase
    s = np.where(systole, p / es_phase, (p - es_phase) / (1.0 - es_phase))
    bump = 0.5 * (1.0 - np.cos(np.pi * s))  # 0 -> 1 on each half
    drop = 1.0 - esv_ratio
    return np.where(systole, 1.0 - drop * bump, esv_ratio + drop * bump)


def random_heart(rng: np.random.Generator, ef: float | None = None, edv_ml: float | None = None) -> HeartShape:
    """Draw a plausible adult heart: EDV 80-170 mL, EF 25-75 % unless given, elliptical short axis.

    Args:
        rng: the generator (its state advances).
        ef: ejection fraction (%) or None to draw one.
        edv_ml: end-diastolic volume (mL) or None to draw one.

    Returns:
        The shape, scaled so that its closed-form EDV equals ``edv_ml``.
    """
    draw_ef = float(rng.uniform(25.0, 75.0))
    draw_edv = float(rng.uniform(80.0, 170.0))
    ef = draw_ef if ef is None else float(ef)
    edv_ml = draw_edv if edv_ml is None else float(edv_ml)
    ratio_b, ratio_c, f = rng.uniform(0.75, 0.9), rng.uniform(1.9, 2.4), rng.uniform(0.4, 0.65)
    a = (edv_ml * 1000.0 / (math.pi * ratio_b * ratio_c * _cap_factor(f))) ** (1.0 / 3.0)
    la_a = rng.uniform(15.0, 20.0)
    return HeartShape(
        a=a,
        b=a * ratio_b,
        c=a * ratio_c,
        f=float(f),
        ef=ef,
        wall=float(rng.uniform(7.0, 11.0)),
        wall_apex=float(rng.uniform(5.0, 8.0)),
        la_a=float(la_a),
        la_b=float(la_a * rng.uniform(0.8, 1.0)),
        la_c=float(rng.uniform(17.0, 24.0)),
        gamma=float(rng.uniform(0.35, 0.6)),
    )
