"""bench/profile_ops.py's table (the profiling itself needs a GPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
profile_ops = pytest.importorskip("profile_ops")


def test_format_case_lists_kernels_per_call() -> None:
    case = {"rule": "frame", "shape": "B10T10N256", "mode": "fwd", "wall_us": 223.1, "kernel_us": 209.5,
            "kernels": [("fwd_parallel_kernel", 1.0, 112.9, 112.9), ("gram_kernel", 2.0, 48.3, 96.6)]}  # fmt: skip
    text = profile_ops.format_case(case)
    lines = text.splitlines()
    assert lines[0] == "## frame B10T10N256 fwd: wall 223.1 us per call, kernels 209.5 us"
    assert lines[3] == "| fwd_parallel_kernel | 1.00 | 112.90 | 112.90 |"
    assert lines[4] == "| gram_kernel | 2.00 | 48.30 | 96.60 |"


def test_main_refuses_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_ops.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        profile_ops.main([])
