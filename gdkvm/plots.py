"""Agreement plots for EF evaluation: Bland-Altman and predicted-vs-reference scatter (matplotlib, Agg canvas).

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, so nothing touches pyplot's global state or
needs a display.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gdkvm.metrics.regression import compute_ef_agreement

__all__ = ["bland_altman_plot", "scatter_plot"]

logger = logging.getLogger(__name__)


def _pairs(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same length, got {p.shape[0]} and {r.shape[0]}")
    ok = np.isfinite(p) & np.isfinite(r)
    return p[ok], r[ok]


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120)
    logger.info("wrote %s", path)
    return path


def bland_altman_plot(
    pred: np.ndarray,
    ref: np.ndarray,
    path: str | Path,
    *,
    title: str = "Bland-Altman: EF",
    quantity: str = "EF",
    unit: str = "%",
    ref_name: str = "reference",
) -> Path:
    """Bland-Altman plot: difference (pred - ref) against the mean of the two, with bias and limits of agreement.

    Args:
        pred: [N] predicted values (NaN pairs are skipped).
        ref: [N] reference values.
        path: output image (PNG).
        title: figure title.
        quantity: name on the axes.
        unit: unit on the axes.
        ref_name: what the reference is ("reference", "true"), for the axis labels.

    Returns:
        the written path.
    """
    p, r = _pairs(pred, ref)
    stats = compute_ef_agreement(p, r)
    fig = Figure(figsize=(6.0, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter((p + r) / 2.0, p - r, s=14, alpha=0.7, color="tab:blue", label=f"cases (n={len(p)})")
    if len(p) >= 2:
        for key, style, label in (
            ("bias", "-", "bias"),
            ("loa_upper", "--", "bias + 1.96 SD"),
            ("loa_lower", "--", "bias - 1.96 SD"),
        ):
            value = float(stats[key])
            ax.axhline(value, color="tab:red", linestyle=style, linewidth=1, label=f"{label} {value:.2f}")
    ax.axhline(0.0, color="0.6", linewidth=0.8)
    ax.set_xlabel(f"mean of predicted and {ref_name} {quantity} [{unit}]")
    ax.set_ylabel(f"predicted - {ref_name} {quantity} [{unit}]")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, path)


def scatter_plot(
    pred: np.ndarray,
    ref: np.ndarray,
    path: str | Path,
    *,
    title: str = "Predicted vs reference EF",
    quantity: str = "EF",
    unit: str = "%",
    ref_name: str = "reference",
) -> Path:
    """Scatter of predicted against reference values with the identity line, MAE and Pearson r in the legend.

    Args:
        pred: [N] predicted values (NaN pairs are skipped).
        ref: [N] reference values.
        path: output image (PNG).
        title: figure title.
        quantity: name on the axes.
        unit: unit on the axes.
        ref_name: what the reference is ("reference", "true"), for the axis labels.

    Returns:
        the written path.
    """
    p, r = _pairs(pred, ref)
    stats = compute_ef_agreement(p, r)
    fig = Figure(figsize=(5.0, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    label = f"n={len(p)}, MAE {stats['mae']:.2f}, r {stats['pearson_r']:.3f}" if len(p) else "no case"
    ax.scatter(r, p, s=14, alpha=0.7, color="tab:blue", label=label)
    both = np.concatenate([p, r]) if len(p) else np.array([0.0, 100.0])
    lo, hi = float(both.min()), float(both.max())
    pad = 0.05 * (hi - lo) + 1.0
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.5", linewidth=1, label="identity")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(f"{ref_name} {quantity} [{unit}]")
    ax.set_ylabel(f"predicted {quantity} [{unit}]")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)
