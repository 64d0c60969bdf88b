"""Masks with known geometry for the EF tests: ellipses and truncated (half) ellipses, and beating clips."""

from __future__ import annotations

import numpy as np


def ellipse(h: int, w: int, centre: tuple[float, float], semi: tuple[float, float], sp=(1.0, 1.0)) -> np.ndarray:
    """[h, w] int64 mask of an ellipse with semi-axes (row, col) in physical units on a grid of spacing sp."""
    yy, xx = np.mgrid[:h, :w]
    r = (yy * sp[0] - centre[0]) / semi[0]
    c = (xx * sp[1] - centre[1]) / semi[1]
    return (r**2 + c**2 <= 1).astype(np.int64)


def half_ellipse(
    h: int, w: int, base_row: float, col: float, length: float, radius: float, sp=(1.0, 1.0)
) -> np.ndarray:
    """[h, w] LV model: the upper half of an ellipse (apex up), cut flat at ``base_row`` (physical units)."""
    yy, _ = np.mgrid[:h, :w]
    m = ellipse(h, w, (base_row, col), (length, radius), sp)
    return (m.astype(bool) & (yy * sp[0] <= base_row)).astype(np.int64)


def beating_clip(
    fps: float,
    seconds: float,
    heart_rate: float | np.ndarray,
    *,
    length=(40.0, 32.0),
    radius=(16.0, 11.0),
    size=(112, 112),
    noise: float = 0.0,
    seed: int = 0,
    start_phase: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """[T, H, W] masks of a beating half-ellipse LV and the [T] contraction (0 at ED, 1 at ES).

    One cycle: contraction over 35 % of the period (ED -> ES), relaxation over the next 35 %, diastasis after.
    ``heart_rate`` may be an array of per-beat rates (irregular rhythm). ``start_phase`` 0.5 starts in diastole.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(fps * seconds))) / fps
    rates = np.atleast_1d(np.asarray(heart_rate, dtype=np.float64))
    rates = np.resize(rates, max(len(rates), int(seconds * rates.max() / 60.0) + 3))  # cycle the given rates
    periods = 60.0 / rates
    starts = np.concatenate([[-start_phase * periods[0]], -start_phase * periods[0] + np.cumsum(periods)])
    contraction = np.zeros(len(t))
    for i, tt in enumerate(t):
        k = min(int(np.searchsorted(starts, tt, side="right")) - 1, len(periods) - 1)
        ph = (tt - starts[k]) / periods[k]
        c = ph / 0.35 if ph < 0.35 else max(0.0, 1.0 - (ph - 0.35) / 0.35)
        contraction[i] = 0.5 - 0.5 * np.cos(np.pi * min(c, 1.0))
    h, w = size
    out = np.zeros((len(t), h, w), dtype=np.int64)
    for i, c in enumerate(contraction):
        ln = length[0] + (length[1] - length[0]) * c + noise * rng.normal()
        rd = radius[0] + (radius[1] - radius[0]) * c + 0.5 * noise * rng.normal()
        out[i] = half_ellipse(h, w, base_row=h - 12.0, col=w / 2.0, length=ln, radius=rd)
    return out, contraction
