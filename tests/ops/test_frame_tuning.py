"""The frame kernels' launch helper: shared-memory retries and the warp cap, without a GPU."""

from __future__ import annotations

import pytest
import torch
import triton

from gdkvm.ops.frame.tuning import launch, safe_warps


class FakeKernel:
    """Stands in for a JITFunction: records each launch's keyword arguments; raises OutOfResources (as Triton does
    before running a kernel that needs more shared memory than the device has) unless ``accept`` says yes."""

    def __init__(self, accept) -> None:  # noqa: ANN001
        self.accept = accept
        self.calls: list[dict] = []

    def __getitem__(self, grid: tuple):  # noqa: ANN204
        def run(*args: object, **kwargs: object) -> str:
            self.calls.append(kwargs)
            if not self.accept(kwargs):
                raise triton.runtime.errors.OutOfResources(300000, 232448, "shared memory")
            return "compiled"

        return run


def test_launch_runs_once_when_it_fits() -> None:
    kernel = FakeKernel(lambda kw: True)
    assert launch(kernel, (1,), 3, PREC="tf32x3", num_warps=8) == "compiled"
    assert kernel.calls == [{"PREC": "tf32x3", "num_warps": 8}]


def test_launch_retries_with_fp32_dots_then_four_warps() -> None:
    kernel = FakeKernel(lambda kw: kw["num_warps"] == 4)
    launch(kernel, (1,), PREC="tf32x3", SPREC="tf32", num_warps=8)
    assert kernel.calls == [
        {"PREC": "tf32x3", "SPREC": "tf32", "num_warps": 8},
        {"PREC": "ieee", "SPREC": "ieee", "num_warps": 8},
        {"PREC": "ieee", "SPREC": "ieee", "num_warps": 4},
    ]


def test_launch_gives_up_with_the_last_error() -> None:
    kernel = FakeKernel(lambda kw: False)
    with pytest.raises(triton.runtime.errors.OutOfResources):
        launch(kernel, (1,), PREC="ieee", num_warps=8)
    assert [c["num_warps"] for c in kernel.calls] == [8, 4]


def test_safe_warps_keeps_tensor_core_tiles_16_wide() -> None:
    assert safe_warps(8, 64, 16) == 4  # 16 columns over 2 warpgroups would be 8 wide
    assert safe_warps(8, 64, 64) == 8
    assert safe_warps(2, 64, 64) == 4


def test_walker_slice_widens_only_past_the_sms_and_by_whole_heads(monkeypatch: pytest.MonkeyPatch) -> None:
    from gdkvm.ops.frame import tuning

    monkeypatch.setattr(tuning, "sm_count", lambda index: 132)
    cuda = torch.device("cuda")
    assert tuning.walker_slice(32, 256, 8, 10, cuda) == 32  # 80 programs fit
    assert tuning.walker_slice(32, 256, 8, 32, cuda) == 64  # 256 do not: two heads per slice, 128 programs
    assert tuning.walker_slice(16, 96, 6, 64, cuda) == 32  # 6 heads of 16: 2 per slice; 4 would not divide 6
    assert tuning.walker_slice(32, 256, 8, 32, torch.device("cpu")) == 32
    monkeypatch.setitem(tuning.TUNING, "fast_wide_slices", 0)
    assert tuning.walker_slice(32, 256, 8, 32, cuda) == 32


def test_launch_cooperative_reports_a_refused_grid_and_raises_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    from gdkvm.ops.frame import tuning

    calls = []

    def fake_launch(kernel: object, grid: tuple, *args: object, **kwargs: object) -> None:
        calls.append(kwargs)
        if kernel == "too-big":
            raise RuntimeError("Triton Error [CUDA]: too many blocks in cooperative launch")
        if kernel == "broken":
            raise RuntimeError("an illegal memory access was encountered")

    monkeypatch.setattr(tuning, "launch", fake_launch)
    assert tuning.launch_cooperative("fits", (4,), 1, X=2) is True
    assert calls[-1] == {"launch_cooperative_grid": True, "X": 2}
    assert tuning.launch_cooperative("too-big", (4096,)) is False
    with pytest.raises(RuntimeError, match="illegal memory access"):
        tuning.launch_cooperative("broken", (4,))
