"""Agreement of predicted EF (or any scalar) with a reference: MAE, RMSE, Pearson r, R^2, bias, limits of agreement.

Conventions, stated once:

- ``r2`` is the coefficient of determination ``1 - SS_res / SS_tot`` of the predictions against the reference
  (``sklearn.metrics.r2_score``; it can be negative), **not** the squared Pearson correlation that an ``lm`` fit
  reports (EchoNet's R scripts); the latter is given as ``pearson_r_squared``. ``r2_definition`` names it in the
  output.
- ``bias`` is ``mean(pred - ref)``; limits of agreement are ``bias +- 1.96 * SD(pred - ref)`` (Bland-Altman, SD with
  ddof=1).
- Pairs with NaN in either value are left out and counted in ``n_missing``. Statistics that need more points than
  there are (r and SD need 2, r also needs some spread) are NaN.

Follows MONAI's Cumulative pattern: ``EFAgreementMetric()(pred, ref)`` accumulates a batch, ``aggregate()`` computes,
``reset()`` clears; ``compute_ef_agreement(pred, ref)`` is the functional form.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["R2_DEFINITION", "EFAgreementMetric", "compute_ef_agreement"]

R2_DEFINITION = "coefficient of determination 1 - SS_res/SS_tot of pred vs ref (sklearn r2_score), not Pearson r^2"


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    return arr


def compute_ef_agreement(pred: Any, ref: Any) -> dict[str, float | int | str]:
    """Agreement statistics of ``pred`` against ``ref``.

    Args:
        pred: [N] predictions (array-like or tensor); NaN marks a missing prediction.
        ref: [N] references, same length.

    Returns:
        dict with ``n``, ``n_missing``, ``mae``, ``rmse``, ``pearson_r``, ``pearson_r_squared``, ``r2``,
        ``r2_definition``, ``bias``, ``sd_diff``, ``loa_lower``, ``loa_upper``, ``ref_mean``, ``pred_mean``.

    Raises:
        ValueError: the two have different lengths.
    """
    p, r = _as_array(pred), _as_array(ref)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same length, got {p.shape[0]} and {r.shape[0]}")
    ok = np.isfinite(p) & np.isfinite(r)
    p, r = p[ok], r[ok]
    n = int(p.size)
    nan = math.nan
    out: dict[str, float | int | str] = {"n": n, "n_missing": int((~ok).sum()), "r2_definition": R2_DEFINITION}
    if n == 0:
        keys = ("mae", "rmse", "pearson_r", "pearson_r_squared", "r2", "bias", "sd_diff", "loa_lower", "loa_upper")
        out.update({k: nan for k in keys})
        out.update(ref_mean=nan, pred_mean=nan)
        return out
    d = p - r
    sd = float(d.std(ddof=1)) if n >= 2 else nan
    ss_tot = float(np.sum((r - r.mean()) ** 2))
    corr = nan
    if n >= 2 and p.std() > 0 and r.std() > 0:
        corr = float(np.corrcoef(p, r)[0, 1])
    out.update(
        mae=float(np.abs(d).mean()),
        rmse=float(np.sqrt(np.mean(d**2))),
        pearson_r=corr,
        pearson_r_squared=corr * corr,
        r2=1.0 - float(np.sum(d**2)) / ss_tot if ss_tot > 0 else nan,
        bias=float(d.mean()),
        sd_diff=sd,
        loa_lower=float(d.mean()) - 1.96 * sd,
        loa_upper=float(d.mean()) + 1.96 * sd,
        ref_mean=float(r.mean()),
        pred_mean=float(p.mean()),
    )
    return out


class EFAgreementMetric:
    """Cumulative EF agreement: call with batches, ``aggregate()`` at the end, ``reset()`` to start over.

    Example:
        >>> metric = EFAgreementMetric()
        >>> metric([60.0, 50.0], [58.0, 55.0])
        >>> metric.aggregate()["mae"]
        3.5
    """

    def __init__(self) -> None:
        self._pred: list[np.ndarray] = []
        self._ref: list[np.ndarray] = []

    def __call__(self, y_pred: Any, y: Any) -> None:
        """Add a batch.

        Args:
            y_pred: [B] predicted EF (NaN for a case without a prediction).
            y: [B] reference EF.

        Raises:
            ValueError: different batch lengths.
        """
        p, r = _as_array(y_pred), _as_array(y)
        if p.shape != r.shape:
            raise ValueError(f"y_pred and y must have the same length, got {p.shape[0]} and {r.shape[0]}")
        self._pred.append(p)
        self._ref.append(r)

    def get_buffer(self) -> tuple[np.ndarray, np.ndarray]:
        """([N] predictions, [N] references) accumulated so far."""
        if not self._pred:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(self._pred), np.concatenate(self._ref)

    def aggregate(self) -> dict[str, float | int | str]:
        """The statistics of ``compute_ef_agreement`` over everything accumulated."""
        return compute_ef_agreement(*self.get_buffer())

    def reset(self) -> None:
        """Forget all batches."""
        self._pred.clear()
        self._ref.clear()
