"""The ablation bench of the token kernels (``bench/ablate_token.py``) patches the kernel source as text: its CPU
smoke run under the Triton interpreter proves every patch still applies exactly once and compiles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "ablate_token.py"


def test_every_ablation_applies_and_runs_on_the_cpu() -> None:
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, env=env, timeout=600
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for variant in ("no_solve", "no_t_store", "no_u", "no_o", "no_a_load", "no_update"):
        assert f"| {variant} |" in proc.stdout, proc.stdout[-2000:]


def test_needs_a_gpu_without_smoke() -> None:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0 and "needs a CUDA device" in proc.stderr
