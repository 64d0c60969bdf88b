"""The token-rule probes of bench/ (``chain_probe.py``, ``step_probe.py``) check their kernels against torch loops in
their CPU smoke runs (Triton interpreter); on a GPU they only time those kernels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("script", ["chain_probe.py", "step_probe.py"])
def test_probe_kernels_match_torch_on_the_cpu(script: str) -> None:
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, str(BENCH / script), "--smoke"], capture_output=True, text=True, env=env,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0 and "smoke: ok" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.parametrize("script", ["chain_probe.py", "step_probe.py"])
def test_probe_without_smoke_needs_a_gpu(script: str) -> None:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TRITON_INTERPRET="0")
    proc = subprocess.run([sys.executable, str(BENCH / script)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0 and "needs a CUDA GPU" in proc.stderr
