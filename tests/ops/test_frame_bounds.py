"""Out-of-bounds checks of the frame-rule Triton kernels under the interpreter (CPU).

The interpreter reads and writes host memory at whatever address a kernel computes, so a missing mask does not crash
here, it silently reads a neighbour (and only crashes on the GPU). Two nets catch it:
1. every masked-in load and store of a launch must fall inside ONE tensor argument of that launch (checked by
   wrapping the interpreter's memory ops);
2. inputs are views into the middle of NaN-filled buffers (guard bands): any read past an input shows up as NaN in
   the results, and any write into a guard band replaces a NaN.
Shapes: sizes that are not multiples of any block (N = 100, Dk = 48, Dv = 96, H = 6, T = 7), T = 1 at N = 196 with
Dk = 128 and Dv = 512, non-power-of-two Dk and Dv, many heads, one head; both forward recurrences.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from gdkvm.ops import frame_gated_delta, frame_gated_delta_step
from gdkvm.ops.frame.triton_fwd import TUNING
from tests.ops.test_frame_naive import make_inputs
from tests.ops.test_frame_triton import GRAD_NAMES, rel_rms

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="checks the Triton interpreter")

PARAMS = ("w_beta", "w_alpha", "a_log", "dt_bias")
SHAPES = [  # (B, T, N, Dk, Dv, H), forward recurrence
    pytest.param((3, 7, 100, 48, 96, 6), "parallel", id="B3T7N100Dk48Dv96H6"),
    pytest.param((3, 7, 100, 48, 96, 6), "serial", id="B3T7N100Dk48Dv96H6-serial"),
    pytest.param((1, 1, 196, 128, 512, 8), "parallel", id="B1T1N196Dk128Dv512H8"),
    pytest.param((1, 2, 37, 70, 80, 5), "serial", id="B1T2N37Dk70Dv80H5"),
    pytest.param((1, 2, 20, 70, 40, 20), "serial", id="B1T2N20Dk70Dv40H20"),
    pytest.param((2, 3, 11, 16, 32, 1), "parallel", id="B2T3N11Dk16Dv32H1"),
    pytest.param((2, 3, 13, 32, 64, 4), "parallel", id="B2T3N13Dk32Dv64H4-exact"),  # the lean walk without masks
    pytest.param((3, 7, 100, 48, 96, 6), "walk", id="B3T7N100Dk48Dv96H6-old-walk"),  # fwd_parallel_kernel
    pytest.param((3, 7, 100, 48, 96, 6), "fused", id="B3T7N100Dk48Dv96H6-fused"),  # one-launch forward, phased
    pytest.param((2, 3, 11, 16, 32, 1), "fused", id="B2T3N11Dk16Dv32H1-fused"),
    pytest.param((3, 7, 100, 48, 96, 6), "wide", id="B3T7N100Dk48Dv96H6-wide-gram"),  # 64 columns per Gram program
    pytest.param((1, 2, 37, 70, 80, 5), "wide", id="B1T2N37Dk70Dv80H5-wide-gram"),
]


class BoundsChecker:
    """Wraps the interpreter's masked loads and stores; records accesses outside the launch's tensor arguments."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import triton.runtime.interpreter as interp

        self.extents: list[tuple[int, int]] = []
        self.kernel = ""
        self.violations: list[str] = []
        self.accesses = 0
        init_args, load, store = (
            interp.GridExecutor._init_args_hst,
            interp.InterpreterBuilder.create_masked_load,
            interp.InterpreterBuilder.create_masked_store,
        )
        checker = self

        def init_args_hst(executor, args_dev, kwargs):  # noqa: ANN001, ANN202
            args_hst, kwargs_hst = init_args(executor, args_dev, kwargs)
            checker.kernel = executor.fn.__name__
            checker.extents = [_extent(a) for a in [*args_hst, *kwargs_hst.values()] if isinstance(a, torch.Tensor)]
            return args_hst, kwargs_hst

        def masked_load(builder, ptrs, mask, other, *rest):  # noqa: ANN001, ANN202
            itemsize = np.dtype(interp._get_np_dtype(ptrs.get_element_ty())).itemsize
            checker.check(ptrs.data, mask.data, itemsize, "load")
            return load(builder, ptrs, mask, other, *rest)

        def masked_store(builder, ptrs, value, mask, *rest):  # noqa: ANN001, ANN202
            checker.check(ptrs.data, mask.data, value.data.dtype.itemsize, "store")
            return store(builder, ptrs, value, mask, *rest)

        monkeypatch.setattr(interp.GridExecutor, "_init_args_hst", init_args_hst)
        monkeypatch.setattr(interp.InterpreterBuilder, "create_masked_load", masked_load)
        monkeypatch.setattr(interp.InterpreterBuilder, "create_masked_store", masked_store)

    def check(self, ptrs: np.ndarray, mask: np.ndarray, itemsize: int, what: str) -> None:
        active = ptrs[np.broadcast_to(mask, ptrs.shape)]
        if active.size == 0:
            return
        self.accesses += 1
        lo, hi = int(active.min()), int(active.max()) + itemsize
        if not any(a <= lo and hi <= b for a, b in self.extents) and len(self.violations) < 20:
            self.violations.append(f"{self.kernel}: {what} of [{lo:#x}, {hi:#x}) outside every tensor argument")


def _extent(x: torch.Tensor) -> tuple[int, int]:
    span = sum((s - 1) * st for s, st in zip(x.shape, x.stride())) + 1 if x.numel() else 0
    return x.data_ptr(), x.data_ptr() + span * x.element_size()


def in_guard_bands(x: torch.Tensor, band: int = 257) -> tuple[torch.Tensor, torch.Tensor]:
    """A copy of x as a contiguous view into the middle of a NaN-filled buffer; returns (view, buffer)."""
    buf = torch.full((x.numel() + 2 * band,), float("nan"), dtype=x.dtype)
    view = buf[band : band + x.numel()].view(x.shape)
    view.copy_(x)
    return view, buf


@pytest.fixture
def checker(monkeypatch: pytest.MonkeyPatch) -> BoundsChecker:
    return BoundsChecker(monkeypatch)


@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
@pytest.mark.parametrize(("shape", "recurrence"), SHAPES)
def test_no_out_of_bounds_access(
    shape: tuple, recurrence: str, with_state: bool, checker: BoundsChecker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(TUNING, "fast_path", int(recurrence != "serial"))
    monkeypatch.setitem(TUNING, "fused_fwd", 2 if recurrence == "fused" else 0)
    monkeypatch.setitem(TUNING, "gram_cols", 64 if recurrence == "wide" else 0)
    monkeypatch.setitem(TUNING, "fast_lean", int(recurrence != "walk"))  # "parallel": the lean walk
    monkeypatch.setitem(TUNING, "bwd_sliced", int(recurrence != "serial"))  # backward: value slices or one program
    b, t, n, dk, dv, h = shape
    inp = make_inputs(b=b, t=t, n=n, dk=dk, dv=dv, heads=h, with_state=with_state)
    guarded, buffers = {}, {}
    for name, x in inp.items():
        if isinstance(x, torch.Tensor):
            guarded[name], buffers[name] = in_guard_bands(x)
            guarded[name].requires_grad_(True)
        else:
            guarded[name] = x
    o, final = frame_gated_delta(**guarded, output_final_state=True, backend="triton")
    gen = torch.Generator().manual_seed(1)
    loss = (o * torch.randn(o.shape, generator=gen)).sum()
    (loss + (final * torch.randn(final.shape, generator=gen)).sum()).backward()
    with torch.no_grad():
        o_inf, final_inf = frame_gated_delta(**guarded, output_final_state=True, backend="triton")
        params = {p: guarded[p] for p in PARAMS}
        o_step, state_step = frame_gated_delta_step(
            guarded["k"][:, 0], guarded["v"][:, 0], **params, heads=h, state=guarded["initial_state"], backend="triton"
        )
    assert checker.accesses > 0, "the interpreter hooks saw no memory access"
    assert not checker.violations, "\n".join(checker.violations)

    ref = {n_: (x.clone().requires_grad_(True) if isinstance(x, torch.Tensor) else x) for n_, x in inp.items()}
    o_ref, final_ref = frame_gated_delta(**ref, output_final_state=True, backend="naive")
    gen = torch.Generator().manual_seed(1)
    loss = (o_ref * torch.randn(o_ref.shape, generator=gen)).sum()
    (loss + (final_ref * torch.randn(final_ref.shape, generator=gen)).sum()).backward()
    results = {"o": (o, o_ref), "final": (final, final_ref), "o_inference": (o_inf, o_ref)}
    results["final_inference"] = (final_inf, final_ref)
    step_ref = frame_gated_delta_step(
        inp["k"][:, 0], inp["v"][:, 0], **{p: inp[p] for p in PARAMS}, heads=h, state=inp["initial_state"]
    )
    results["o_step"] = (o_step, step_ref[0])
    results["state_step"] = (state_step, step_ref[1])
    for name in GRAD_NAMES:
        if ref.get(name) is not None and ref[name].grad is not None:
            results[f"d{name}"] = (guarded[name].grad, ref[name].grad)
    for name, (got, want) in results.items():
        assert torch.isfinite(got).all(), f"{name} has NaN: a read past an input"
        assert rel_rms(got.detach(), want.detach()) <= 1e-3, name
    for name, buf in buffers.items():
        band = buf.numel() - inp[name].numel()
        outside = torch.cat([buf[: band // 2], buf[buf.numel() - band // 2 :]])
        assert torch.isnan(outside).all(), f"a kernel wrote into the guard band of {name}"


def test_checker_catches_an_unmasked_read(checker: BoundsChecker) -> None:
    import triton
    import triton.language as tl

    @triton.jit
    def overreach(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
        r = tl.arange(0, BLOCK)
        tl.store(y_ptr + r, tl.load(x_ptr + r, mask=r < n + 1, other=0.0), mask=r < n)

    x, y = torch.zeros(10), torch.zeros(10)
    overreach[(1,)](x, y, 10, BLOCK=16)
    assert checker.violations and "overreach: load" in checker.violations[0]
