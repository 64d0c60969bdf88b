"""The GPU self-check of the token-rule kernels (``bench/ops_token.py --check``) runs its CPU case under the Triton
interpreter, so the script the GPU rounds rely on cannot rot unnoticed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "ops_token_check.py"


def test_every_launch_checks_out_on_the_cpu_case() -> None:
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--check-child", "tiny-cpu", "high"], capture_output=True, text=True, env=env,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RESULT tiny-cpu high: all launches ok" in proc.stdout, proc.stdout[-2000:]
    assert "e2e ok" in proc.stdout


def test_bad_usage_is_a_clear_message() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "usage: ops_token_check.py" in proc.stderr
