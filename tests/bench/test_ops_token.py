"""The token-rule bench (``bench/ops_token.py``) on the CPU, with the timing replaced: a variant whose kernel cannot
run on the card (out of shared memory, say) is reported and skipped, while a CUDA fault, after which nothing in the
process can run, still ends the run; variant flags resolve to the environment they name."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "ops_token.py"


@pytest.fixture()
def bench(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("ops_token_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "make_inputs", lambda shape: {})
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    return module


def _fake_time_ours(name: str, inputs: dict, args: argparse.Namespace, variant: str) -> dict:
    if variant == "high+sf3":
        raise RuntimeError("out of resource: shared memory, Required: 238088, Hardware limit: 232448.")
    if variant == "fast":
        raise RuntimeError("Triton Error [CUDA]: an illegal memory access was encountered")
    return {"shape": name, "variant": variant, "ours_fwd_ms": 0.5, "ours_fwdbwd_ms": 1.5, "o": None}


def test_a_variant_that_cannot_run_is_skipped(bench, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(bench, "time_ours", _fake_time_ours)
    args = argparse.Namespace(variants=["high", "high+sf3", "high+seg2"], no_accuracy=True)
    rows = bench.bench_shape("B4T2560H8K64V64", args, {"B4T2560H8K64V64:fwd": 0.25}, None)
    assert [r["variant"] for r in rows] == ["high", "high+seg2"]
    assert rows[0]["speedup_fwd"] == pytest.approx(0.5) and rows[0]["pass_fwd"] is False
    assert "high+sf3: skipped, RuntimeError: out of resource: shared memory" in capsys.readouterr().out


def test_a_cuda_fault_ends_the_run(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "time_ours", _fake_time_ours)
    args = argparse.Namespace(variants=["high", "fast"], no_accuracy=True)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        bench.bench_shape("B4T2560H8K64V64", args, {}, None)


def test_variant_flags_name_their_environment(bench) -> None:
    env = bench.variant_env("fast+seg2+sb2")
    assert env["GDKVM_TOKEN_PRECISION"] == "fast" and env["GDKVM_TOKEN_SEGMENTS"] == "2"
    assert '"state_bwd": {"num_stages": 2}' in env["GDKVM_TOKEN_CONFIG"]
    with pytest.raises(SystemExit, match="unknown variant flag"):
        bench.variant_env("high+warp9")
