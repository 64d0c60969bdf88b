"""Random cases (heart, cycle, probe pose) and the in-memory clip API :func:`make_clip`.

Each case draws from its own ``numpy.random.Generator``; the writers seed one per patient / video from
``(seed, index)``, so case ``k`` is identical whatever the number of cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gdkvm.data.synthetic.geometry import HeartShape, random_heart, volume_fraction
from gdkvm.data.synthetic.render import Scan, render_view

VIEWS = ("2CH", "4CH")
QUALITIES = ("Good", "Medium", "Poor")
_CLUTTER = {"Good": 0.1, "Medium": 0.35, "Poor": 0.7}


@dataclass(frozen=True)
class Cycle:
    """Timing of the heart beat.

    Attributes:
        heart_rate: beats per minute.
        es_phase: end-systole as a fraction of the cycle (ED is phase 0).
    """

    heart_rate: float
    es_phase: float

    @property
    def period(self) -> float:
        """Seconds per beat."""
        return 60.0 / self.heart_rate

    def key_frames(self, phase0: float, fps: float, n_frames: int) -> tuple[list[int], list[int]]:
        """Frames nearest to each ED and ES instant of a clip whose frame 0 is at cycle phase ``phase0``.

        Returns:
            ``(ed_frames, es_frames)``: sorted 0-based indices in ``[0, n_frames)``.
        """
        beats = n_frames / fps / self.period
        out: list[list[int]] = []
        for offset in (0.0, self.es_phase):
            ks = np.arange(math.floor(phase0 - offset) - 1, math.ceil(phase0 + beats) + 2)
            times = (ks + offset - phase0) * self.period
            frames = np.round(times * fps).astype(int)
            out.append(sorted({int(f) for f in frames if 0 <= f < n_frames}))
        return out[0], out[1]


def random_cycle(rng: np.random.Generator, heart_rate: float | None = None) -> Cycle:
    """Heart rate 55-100 bpm unless given; systole lasts 0.28-0.36 s (capped at 45 % of the beat)."""
    drawn_hr, systole = float(rng.uniform(55.0, 100.0)), float(rng.uniform(0.28, 0.36))
    hr = drawn_hr if heart_rate is None else float(heart_rate)
    return Cycle(heart_rate=hr, es_phase=min(0.45, systole * hr / 60.0))


def random_scan(
    rng: np.random.Generator,
    heart: HeartShape,
    *,
    height: int,
    width: int,
    theta: float,
    quality: str = "Good",
    col_row_ratio: float = 1.0,
    right_heart: bool = False,
) -> Scan:
    """A random apical probe set-up whose fan holds the whole LV cavity (and usually the wall and most of the LA).

    Args:
        rng: the generator.
        heart: the heart (its size sets the imaging depth).
        height: image rows; the fan reaches the bottom row.
        width: image columns.
        theta: view-plane angle (rad) about the long axis.
        quality: "Good", "Medium" or "Poor" (near-field clutter and lower gain for worse images).
        col_row_ratio: column spacing / row spacing (1 = square pixels).
        right_heart: draw RV and RA (4CH).

    Returns:
        The scan; its spacing is ``(depth / height, col_row_ratio * depth / height)`` mm.
    """
    apex_y = heart.wall_apex * heart.esv_ratio**-0.4 + float(rng.uniform(10.0, 22.0))  # apical wall below the probe
    depth = apex_y + heart.c * (1.0 + heart.f) + 1.6 * heart.la_c * float(rng.uniform(1.0, 1.3))
    opening = math.radians(float(rng.uniform(38.0, 45.0)))
    apex_x = float(rng.uniform(0.03, 0.09) if right_heart else rng.uniform(-0.03, 0.03)) * depth
    tilt = math.radians(float(rng.uniform(-10.0, 10.0)))
    looks = {
        "gain": float(rng.uniform(0.8, 1.25)) * (0.85 if quality == "Poor" else 1.0),
        "attenuation": float(rng.uniform(0.002, 0.007)),
        "clutter": _CLUTTER[quality] * float(rng.uniform(0.7, 1.3)),
    }
    for _ in range(30):  # pull the heart to the fan axis and deepen the fan until the LV cavity fits
        sp_row = depth / height
        sp_col = sp_row * col_row_ratio
        scan = Scan(
            height=height, width=width, spacing=(sp_row, sp_col), depth=depth, half_angle=opening,
            apex_x=apex_x, apex_y=apex_y, tilt=tilt, theta=theta, right_heart=right_heart, **looks,
        )  # fmt: skip
        if lv_in_fan(scan, heart):
            break
        apex_x, tilt, depth = 0.7 * apex_x, 0.7 * tilt, 1.05 * depth
    return scan


def lv_in_fan(scan: Scan, heart: HeartShape, margin: float = math.radians(2.0)) -> bool:
    """Whether the LV cavity lies inside the fan (with ``margin`` rad to spare) at both ED and ES.

    The wall may touch the fan edge near the apex, as in real apical views; the cavity (whose area and volume are
    the truth) never does.
    """
    for fraction in (1.0, heart.esv_ratio):
        sec = heart.section(scan.theta, fraction)
        z = np.linspace(0.0, sec.base, 64)
        half = sec.lv_half_width(z)
        for side in (-1.0, 1.0):
            x, y = scan.to_mm(side * half, z)
            outside_fan = np.abs(np.arctan2(x, y)) > scan.half_angle - margin
            outside_image = np.abs(x) > (scan.width - 1) / 2.0 * scan.spacing[1] - 1.0
            if np.any(outside_fan | outside_image) or np.any(np.hypot(x, y) > scan.depth):
                return False
    return True


def view_angles(rng: np.random.Generator) -> dict[str, float]:
    """View-plane angles (rad): 4CH near 0, 2CH about 60 deg (55-65) away from it."""
    four = math.radians(float(rng.uniform(-10.0, 10.0)))
    return {"4CH": four, "2CH": four + math.radians(float(rng.uniform(55.0, 65.0)))}


def make_clip(
    seed: int | tuple[int, ...],
    view: str = "4CH",
    size: tuple[int, int] = (256, 256),
    frames: int = 100,
    fps: float = 50.0,
    ef: float | None = None,
    heart_rate: float | None = None,
    quality: str = "Good",
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One synthetic apical clip in memory, starting at a random point of the cycle.

    Args:
        seed: seed of the clip's generator (an int or a tuple of ints).
        view: "4CH" or "2CH".
        size: (H, W) in pixels.
        frames: number of frames T.
        fps: frames per second.
        ef: ejection fraction (%) or None to draw one in 25-75.
        heart_rate: beats per minute or None to draw one in 55-100.
        quality: "Good", "Medium" or "Poor".

    Returns:
        ``frames`` [T, H, W] uint8, ``masks`` [T, H, W] uint8 CAMUS labels (0 bg, 1 LV, 2 myocardium, 3 LA), and
        ``info``: ``edv_ml``, ``esv_ml``, ``ef`` (true, from the 3D shape), ``ed_frames``/``es_frames`` (0-based
        frames nearest to each ED/ES instant), ``spacing`` (row, col) mm, ``fps``, ``heart_rate``, ``view``,
        ``volume_ml`` [T] and ``lv_area_mm2`` [T] (exact, per frame).
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if quality not in QUALITIES:
        raise ValueError(f"quality must be one of {QUALITIES}, got {quality!r}")
    if frames < 1 or fps <= 0:
        raise ValueError(f"need frames >= 1 and fps > 0, got {frames} and {fps}")
    rng = np.random.default_rng(seed)
    heart = random_heart(rng, ef=ef)
    cycle = random_cycle(rng, heart_rate)
    theta = view_angles(rng)[view]
    four = view == "4CH"
    scan = random_scan(rng, heart, height=size[0], width=size[1], theta=theta, quality=quality, right_heart=four)
    phase0 = float(rng.uniform(0.0, 1.0))
    phase = phase0 + np.arange(frames) / fps / cycle.period
    fractions = volume_fraction(phase, cycle.es_phase, heart.esv_ratio)
    images, masks = render_view(rng, heart, scan, fractions)
    ed, es = cycle.key_frames(phase0, fps, frames)
    info = {
        "edv_ml": heart.edv_ml,
        "esv_ml": heart.esv_ml,
        "ef": heart.ef,
        "ed_frames": ed,
        "es_frames": es,
        "spacing": scan.spacing,
        "fps": float(fps),
        "heart_rate": cycle.heart_rate,
        "view": view,
        "volume_ml": fractions * heart.edv_ml,
        "lv_area_mm2": np.array([heart.section(theta, float(v)).lv_area() for v in fractions]),
    }
    return images, masks, info
