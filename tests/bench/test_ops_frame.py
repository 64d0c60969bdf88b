"""bench/ops_frame.py's table logic on the CPU (the timing itself needs a GPU): interleaved rounds, medians, targets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
ops_frame = pytest.importorskip("ops_frame")


def test_rounds_interleave_and_each_column_is_its_median(monkeypatch: pytest.MonkeyPatch) -> None:
    order, fake_ms = [], {"eager": [4.0, 9.0, 5.0], "ours": [0.1, 0.3, 0.2]}
    impls = {ops_frame.paper_loop: "eager", ops_frame.ours: "ours"}

    def fake_measure(fn, inputs, mode, warmup, rep):  # noqa: ANN001, ANN202
        name = impls[fn]
        order.append(name)
        return fake_ms[name][sum(n == name for n in order) - 1], {"eager": 50.0, "ours": 30.0}[name]

    small = [torch.rand(1, 2, 3, ops_frame.DK), torch.randn(1, 2, 3, ops_frame.DV)]
    small += [torch.randn(ops_frame.DV, ops_frame.HEADS) / 16, torch.randn(ops_frame.DV, ops_frame.HEADS) / 16]
    small += [torch.zeros(ops_frame.HEADS), torch.zeros(ops_frame.HEADS)]
    monkeypatch.setattr(ops_frame, "measure", fake_measure)
    monkeypatch.setattr(ops_frame, "make_inputs", lambda b, t, n, dtype: small)
    monkeypatch.setattr(ops_frame, "frame_gated_delta", lambda *a, **kw: ops_frame.paper_loop(*a[:6]))
    monkeypatch.setattr(ops_frame, "launch_overhead", lambda inputs, warmup, rep: {"ours_host_us": 1.0})
    args = ops_frame.build_parser().parse_args(["--shapes", "B10T10N64", "--modes", "fwd", "--no-compile"])
    (row,) = ops_frame.bench_shape("B10T10N64", args)
    assert order == ["eager", "ours"] * 3  # one of each per round, in turn
    assert row["eager_ms"] == 5.0 and row["ours_ms"] == 0.2 and row["ours_ms_rounds"] == [0.1, 0.3, 0.2]
    assert row["ours_span"] == "0.100-0.300"
    assert row["x_eager"] == pytest.approx(25.0) and row["meets_targets"] is True  # 25x eager, less memory
    assert "ours_span" in ops_frame.format_table([row])
