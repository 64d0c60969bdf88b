"""The Gram pre-pass beside the lean walk (``TUNING["walk_overlap"]``) under the interpreter: results, the counters
the Gram programs leave, the launch order and the guard that keeps a waiting walk from blocking the Gram."""

from __future__ import annotations

import pytest
import torch

from gdkvm.ops.frame import triton_fwd, triton_gram, tuning
from tests.ops.test_frame_naive import make_inputs
from tests.ops.test_frame_triton import assert_matches_with_and_without_gradients
from tests.ops.test_launch_cache import KERNEL


@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
def test_gram_beside_the_walk_matches_reference(with_state: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward, final state and gradients with the walk waiting on per-frame counters (lookahead of two frames over
    clips of one, three and five frames), and every counter at the Gram's programs per frame afterwards."""
    monkeypatch.setitem(tuning.TUNING, "walk_overlap", 1)
    monkeypatch.setitem(tuning.TUNING, "overlap_lookahead", 2)
    grams, walks = [], []
    real_gram, real_fwd = triton_gram.launch_planned, triton_fwd.launch_planned

    def gram_spy(*args: object, **kwargs: object) -> object:
        out = real_gram(*args, **kwargs)  # the interpreter has run every program when this returns
        if kwargs.get("SIGNAL"):
            flags, gc = args[18], args[21]
            grams.append(bool((flags[..., 0] == gc).all() and (flags[..., 1] == 0).all()))
        return out

    def fwd_spy(*args: object, **kwargs: object) -> object:
        if args[1] is triton_fwd.fwd_lean_kernel:
            walks.append(kwargs.get("WAIT"))
        return real_fwd(*args, **kwargs)

    monkeypatch.setattr(triton_gram, "launch_planned", gram_spy)
    monkeypatch.setattr(triton_fwd, "launch_planned", fwd_spy)
    for b, t, n, dk, dv, h in ((2, 3, 10, 32, 64, 4), (1, 5, 9, 20, 96, 6), (1, 1, 5, 16, 64, 2)):
        assert_matches_with_and_without_gradients(
            make_inputs(b=b, t=t, n=n, dk=dk, dv=dv, heads=h, with_state=with_state)
        )
    assert len(walks) == 6 and all(walks)  # two forwards per shape, each walk waiting on the counters
    assert len(grams) == 6 and all(grams)


def test_overlap_only_where_an_sm_stays_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning, "sm_count", lambda index: 8)
    cuda = torch.device("cuda", 0)
    monkeypatch.setitem(tuning.TUNING, "walk_overlap", 0)
    assert not tuning.overlap_fits(2, cuda) and not tuning.overlap_fits(2, torch.device("cpu"))
    monkeypatch.setitem(tuning.TUNING, "walk_overlap", 1)
    assert tuning.overlap_fits(7, cuda) and not tuning.overlap_fits(8, cuda)
    assert tuning.overlap_fits(100, torch.device("cpu"))  # the interpreter runs the Gram first: nothing can block


def test_launch_order() -> None:
    """Without CUDA, or before the Gram's compiled kernel has run once (its first launch compiles and loads a module,
    which can wait for the device to go idle, i.e. for the walk that waits on the Gram), the Gram runs before the
    walk; without a Gram beside it only the walk runs."""
    order = []
    tuning.run_beside(lambda: order.append("walk"), lambda: order.append("gram"), False, True)
    tuning.run_beside(lambda: order.append("walk"), lambda: order.append("gram"), True, False)
    tuning.run_beside(lambda: order.append("walk"), None, False, False)
    assert order == ["gram", "walk", "gram", "walk", "walk"]


def test_warm_only_after_a_compiled_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    """``planned_warm`` holds for a (plan, alignment) whose compiled kernel the keyed launch kept, not before, and
    not for another alignment of the same plan."""
    from gdkvm.ops import _launch_cache as lc

    class Compiled:
        function, packed_metadata = "function", "packed"

        def run(self, *args: object) -> None:
            pass

    monkeypatch.setattr(lc, "usable", lambda kernel: True)
    monkeypatch.setattr(lc, "current_stream", lambda device: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(lc, "_COMPILED", {})
    monkeypatch.setattr(tuning, "interpreting", lambda: False)
    monkeypatch.setattr(tuning, "_on_gpu", lambda x: True)
    monkeypatch.setattr(tuning, "_jit_launch", lambda kernel, grid, *a, **kw: Compiled())
    monkeypatch.setitem(tuning.TUNING, "plan_launch", 1)
    x, token = torch.zeros(16), object()
    assert not tuning.planned_warm(token, KERNEL, x, x, 64, 7, 0.5)
    tuning.launch_planned(token, KERNEL, (1,), x, x, 64, 7, 0.5, BK=16)
    assert tuning.planned_warm(token, KERNEL, x, x, 64, 7, 0.5)
    assert not tuning.planned_warm(token, KERNEL, x, x[1:], 64, 7, 0.5)  # another alignment: another compile
    assert not tuning.planned_warm(object(), KERNEL, x, x, 64, 7, 0.5)
    monkeypatch.setitem(tuning.TUNING, "plan_launch", 0)
    assert not tuning.planned_warm(token, KERNEL, x, x, 64, 7, 0.5)
