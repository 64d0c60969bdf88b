"""EF agreement statistics against hand-computed values (MONAI-style TEST_CASE tables)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gdkvm.metrics.regression import R2_DEFINITION, EFAgreementMetric, compute_ef_agreement

# pred, ref, expected subset of the output (hand-computed)
TEST_CASE_1 = [  # d = [2, -5, 3]; MAE 10/3; RMSE sqrt(38/3); bias 0; SD(d) = sqrt(19)
    [60.0, 50.0, 40.0],
    [58.0, 55.0, 37.0],
    {
        "n": 3,
        "mae": 10.0 / 3.0,
        "rmse": math.sqrt(38.0 / 3.0),
        "bias": 0.0,
        "sd_diff": math.sqrt(19.0),
        "loa_upper": 1.96 * math.sqrt(19.0),
        "loa_lower": -1.96 * math.sqrt(19.0),
        # ref mean 50, SS_tot = 64 + 25 + 169 = 258, SS_res = 38
        "r2": 1.0 - 38.0 / 258.0,
    },
]
TEST_CASE_2 = [  # a constant offset: perfect correlation, bias 5, SD 0, R^2 = 1 - 3*25/SS_tot
    [15.0, 25.0, 35.0],
    [10.0, 20.0, 30.0],
    {"n": 3, "mae": 5.0, "rmse": 5.0, "bias": 5.0, "sd_diff": 0.0, "pearson_r": 1.0, "r2": 1.0 - 75.0 / 200.0},
]
TEST_CASE_3 = [  # NaN pairs are dropped and counted
    [60.0, float("nan"), 50.0, 45.0],
    [55.0, 60.0, float("nan"), 45.0],
    {"n": 2, "n_missing": 2, "mae": 2.5, "bias": 2.5, "rmse": math.sqrt(12.5)},
]
TEST_CASE_4 = [  # anti-correlated
    [1.0, 2.0, 3.0],
    [3.0, 2.0, 1.0],
    {"pearson_r": -1.0, "pearson_r_squared": 1.0, "r2": 1.0 - 8.0 / 2.0},
]


@pytest.mark.parametrize("pred,ref,expected", [TEST_CASE_1, TEST_CASE_2, TEST_CASE_3, TEST_CASE_4])
def test_compute_ef_agreement(pred, ref, expected) -> None:
    out = compute_ef_agreement(pred, ref)
    assert out["r2_definition"] == R2_DEFINITION
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, abs=1e-9), key


def test_r2_differs_from_squared_pearson() -> None:
    out = compute_ef_agreement([15.0, 25.0, 35.0], [10.0, 20.0, 30.0])
    assert out["pearson_r_squared"] == pytest.approx(1.0)
    assert out["r2"] < 0.7


def test_cumulative_matches_functional_and_resets() -> None:
    rng = np.random.default_rng(0)
    ref = rng.uniform(20, 75, 50)
    pred = ref + rng.normal(1.0, 4.0, 50)
    metric = EFAgreementMetric()
    metric(torch.tensor(pred[:20]), torch.tensor(ref[:20]))
    metric(pred[20:], ref[20:])
    agg = metric.aggregate()
    assert agg == compute_ef_agreement(pred, ref)
    assert agg["n"] == 50 and 0.5 < agg["pearson_r"] <= 1.0
    metric.reset()
    assert metric.aggregate()["n"] == 0 and math.isnan(metric.aggregate()["mae"])


def test_degenerate_inputs() -> None:
    one = compute_ef_agreement([50.0], [40.0])
    assert one["mae"] == 10.0 and math.isnan(one["sd_diff"]) and math.isnan(one["pearson_r"])
    with pytest.raises(ValueError, match="same length"):
        compute_ef_agreement([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="same length"):
        EFAgreementMetric()([1.0], [1.0, 2.0])


def test_plots_write_pngs(tmp_path) -> None:
    from gdkvm.plots import bland_altman_plot, scatter_plot

    ref = np.array([35.0, 50.0, 60.0, 65.0, float("nan")])
    pred = np.array([38.0, 47.0, 61.0, 70.0, 55.0])
    for fn, name in ((bland_altman_plot, "ba.png"), (scatter_plot, "sc.png")):
        out = fn(pred, ref, tmp_path / "sub" / name, title="t")
        assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
