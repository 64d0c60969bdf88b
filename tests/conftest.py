"""Test-wide settings. TRITON_INTERPRET must be set before any Triton kernel is defined, so it is set here, at the
very start of collection when there is no GPU; Triton kernels then run on the CPU through the interpreter.
On a CUDA machine the kernels compile for the GPU."""

from __future__ import annotations

import os

import torch  # noqa: E402  (torch defines no Triton kernel; the flag must precede gdkvm.ops imports only)

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked `gpu` when no CUDA device is present (CI never has one)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
