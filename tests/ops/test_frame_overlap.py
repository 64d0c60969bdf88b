"""The Gram pre-pass beside the lean walk (``TUNING["walk_overlap"]``) under the interpreter: results, the counters
the Gram programs leave, the launch order and the guard that keeps a waiting walk from blocking the Gram."""

from __future__ import annotations

import pytest
import torch

from gdkvm.ops.frame import overlap, triton_fwd, tuning
from tests.ops.test_frame_naive import make_inputs
from tests.ops.test_frame_triton import assert_matches_with_and_without_gradients
from tests.ops.test_launch_cache import KERNEL


@pytest.mark.parametrize("mode", [1, 2], ids=["gram", "gram_and_readout"])
@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
def test_work_beside_the_walk_matches_reference(with_state: bool, mode: int, monkeypatch: pytest.MonkeyPatch):
    """Forward, final state and gradients with the walk waiting on per-frame Gram counters (lookahead of two frames
    over clips of one, three and five frames) and, with walk_overlap 2, the readout waiting on the walk's per-frame
    counters; after the walk every Gram counter at 0 again and every state counter at the walk's
    value slices (or 0 where nothing counts into it) until the readout, whose last programs reset them: every
    counter is back at 0 for the next call, which reuses them (no memset per call)."""
    monkeypatch.setitem(tuning.TUNING, "walk_overlap", mode)
    monkeypatch.setitem(tuning.TUNING, "overlap_lookahead", 2)
    counters, walks, reads = [], [], []
    real_fwd = triton_fwd.launch_planned

    def fwd_spy(*args: object, **kwargs: object) -> object:
        out = real_fwd(*args, **kwargs)  # the interpreter has run every program when this returns
        if args[1] is triton_fwd.fwd_lean_kernel:
            walks.append((kwargs.get("WAIT"), kwargs.get("NOTIFY", False)))
            flags, grid = args[-2], args[2]
            if kwargs.get("WAIT"):  # run_beside ran the Gram before (the interpreter); the walk reset its counters
                b, t = grid[0], args[12]
                pairs = flags[: 2 * b * t].view(b, t, 2)
                notified = grid[1] if kwargs.get("NOTIFY") else 0
                counters.append(bool((pairs[..., 0] == 0).all() and (pairs[..., 1] == notified).all()))
                counters.append(bool((flags[2 * b * t :] == 0).all()))
        if args[1] is triton_fwd.readout_kernel:
            reads.append(kwargs.get("WAIT", False))
            if kwargs.get("WAIT"):
                counters.append(bool((args[12] == 0).all()))  # every counter back at 0 for the next call
        return out

    monkeypatch.setattr(triton_fwd, "launch_planned", fwd_spy)
    monkeypatch.setattr(overlap, "launch_planned", fwd_spy)  # the side launches (run_beside with no warm entry)
    for b, t, n, dk, dv, h in ((2, 3, 10, 32, 64, 4), (1, 5, 9, 20, 96, 6), (1, 1, 5, 16, 64, 2)):
        assert_matches_with_and_without_gradients(
            make_inputs(b=b, t=t, n=n, dk=dk, dv=dv, heads=h, with_state=with_state)
        )
    assert walks == [(True, mode == 2)] * 6  # two forwards per shape, each walk waiting on the counters
    assert len(counters) == 6 * (2 + (mode == 2)) and all(counters)
    assert reads == [mode == 2] * 6


def test_overlap_only_where_an_sm_stays_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overlap, "sm_count", lambda index: 8)
    cuda = torch.device("cuda", 0)
    monkeypatch.setitem(tuning.TUNING, "walk_overlap", 0)
    assert not overlap.overlap_fits(2, 10, cuda) and not overlap.overlap_fits(2, 10, torch.device("cpu"))
    monkeypatch.setitem(tuning.TUNING, "walk_overlap", 1)
    assert overlap.overlap_fits(7, 10, cuda) and not overlap.overlap_fits(8, 10, cuda)
    assert overlap.overlap_fits(100, 10, torch.device("cpu"))  # the interpreter runs the Gram first: nothing can block
    limit = tuning.TUNING["overlap_max_t"]
    assert overlap.overlap_fits(7, limit, cuda) and not overlap.overlap_fits(7, limit + 1, cuda)  # long clips: alone


def test_readout_beside_only_where_its_memory_is_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """walk_overlap 3 (the default) puts the readout beside the walk only where its output, made before the walk,
    raises the forward's own peak by at most overlap_read_pct percent (fp32 B10 T10 N256: +20%; N64, whose output
    would reuse the Gram's freed buffers: +50%; bf16 N256: +33%); 1 and 2 decide alone."""
    monkeypatch.setitem(tuning.TUNING, "walk_overlap", 3)
    assert overlap.readout_fits(10, 10, 256, 64, 256, 8, 4, save=False)
    assert overlap.readout_fits(10, 10, 256, 64, 256, 8, 4, save=True)
    assert not overlap.readout_fits(10, 10, 64, 64, 256, 8, 4, save=False)
    assert not overlap.readout_fits(10, 10, 256, 64, 256, 8, 2, save=False)
    monkeypatch.setitem(tuning.TUNING, "overlap_read_pct", 50)
    assert overlap.readout_fits(10, 10, 64, 64, 256, 8, 4, save=False)
    for mode, fits in ((1, False), (2, True)):
        monkeypatch.setitem(tuning.TUNING, "walk_overlap", mode)
        assert overlap.readout_fits(10, 10, 64, 64, 256, 8, 4, save=False) is fits


def test_launch_order() -> None:
    """Without a warm launch beside the walk (no CUDA, or before the side launches' compiled kernels have run once:
    their first launch compiles and loads a module, which can wait for the device to go idle, i.e. for the walk that
    waits on them) they run in turn: the Gram, the walk, the readout, each on the current stream."""
    order = []
    gram = lambda stream: order.append(("gram", stream))  # noqa: E731
    read = lambda stream: order.append(("read", stream))  # noqa: E731
    overlap.run_beside(lambda: order.append(("walk", None)), gram, read, False)
    overlap.run_beside(lambda: order.append(("walk", None)), gram)
    overlap.run_beside(lambda: order.append(("walk", None)), None, read)
    overlap.run_beside(lambda: order.append(("walk", None)), None)
    names = [name for name, _ in order]
    assert names == ["gram", "walk", "read", "gram", "walk", "walk", "read", "walk"]
    assert all(stream is None for _, stream in order)


def test_warm_only_after_a_compiled_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    """``planned_entry`` finds a (plan, alignment) whose compiled kernel the keyed launch kept, not before, and not
    another alignment of the same plan; ``side_launch`` then runs that compiled kernel on the stream it is given."""
    from gdkvm.ops import _launch_cache as lc

    streams = []

    class Compiled:
        function, packed_metadata = "function", "packed"

        def run(self, *args: object) -> None:
            streams.append(args[3])

    monkeypatch.setattr(lc, "usable", lambda kernel: True)
    monkeypatch.setattr(lc, "current_stream", lambda device: 1)
    monkeypatch.setattr(lc, "current_device", lambda: 0)
    monkeypatch.setattr(lc, "_COMPILED", {})
    monkeypatch.setattr(tuning, "interpreting", lambda: False)
    monkeypatch.setattr(tuning, "_on_gpu", lambda x: True)
    monkeypatch.setattr(tuning, "_jit_launch", lambda kernel, grid, *a, **kw: Compiled())
    monkeypatch.setitem(tuning.TUNING, "plan_launch", 1)
    x, token = torch.zeros(16), object()
    assert tuning.planned_entry(token, KERNEL, x, x, 64, 7, 0.5) is None
    _, warm = overlap.side_launch(token, KERNEL, (1,), (x, x, 64, 7, 0.5), {"BK": 16})
    assert not warm
    tuning.launch_planned(token, KERNEL, (1,), x, x, 64, 7, 0.5, BK=16)
    assert tuning.planned_entry(token, KERNEL, x, x, 64, 7, 0.5) is not None
    assert tuning.planned_entry(token, KERNEL, x, x[1:], 64, 7, 0.5) is None  # another alignment: another compile
    assert tuning.planned_entry(object(), KERNEL, x, x, 64, 7, 0.5) is None
    go, warm = overlap.side_launch(token, KERNEL, (1,), (x, x, 64, 7, 0.5), {"BK": 16})
    assert warm
    go(7)
    go(None)
    assert streams == [7, 1]  # the given stream, then the current one (the first launch went through the JIT)
    monkeypatch.setitem(tuning.TUNING, "plan_launch", 0)
    assert tuning.planned_entry(token, KERNEL, x, x, 64, 7, 0.5) is None


def test_counters_are_reused_and_left_at_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeated calls of one plan reuse one counter tensor (no allocation, no memset per call), give the same
    results, and leave every counter at 0; a failed launch drops the tensor (its counters may be left counting)."""
    from gdkvm.ops.frame.api import frame_gated_delta

    monkeypatch.setitem(tuning.TUNING, "walk_overlap", 2)
    monkeypatch.setattr(overlap, "_COUNTERS", {})
    inp = make_inputs(b=2, t=3, n=10, dk=32, dv=64, heads=4, with_state=False)
    with torch.no_grad():
        first = frame_gated_delta(**inp, output_final_state=True, backend="triton")
        (flags,) = overlap._COUNTERS.values()
        second = frame_gated_delta(**inp, output_final_state=True, backend="triton")
    assert list(overlap._COUNTERS.values()) == [flags] and int(flags.abs().sum()) == 0
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("launch failed")

    monkeypatch.setattr(triton_fwd, "launch_overlapped", fail)
    with pytest.raises(RuntimeError, match="launch failed"), torch.no_grad():
        frame_gated_delta(**inp, output_final_state=True, backend="triton")
    assert overlap._COUNTERS == {}


@pytest.mark.parametrize("mode", [1, 2], ids=["gram", "gram_and_readout"])
def test_wide_slices_beside_the_walk(mode: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Walk slices of several heads (``fast_wide_slices`` 2: four heads of 16 columns per program, one slice per
    clip) waiting on the Gram's counters, and the readout waiting on theirs: results as the reference's."""
    monkeypatch.setitem(tuning.TUNING, "walk_overlap", mode)
    monkeypatch.setitem(tuning.TUNING, "fast_wide_slices", 2)
    assert_matches_with_and_without_gradients(make_inputs(b=2, t=3, n=10, dk=32, dv=64, heads=4, with_state=True))


class _Recorder:
    """Stands in for a compiled kernel (and for CUDA streams and events): every launch and stream operation lands in
    one list, tensors as (dtype, shape, whether it is one of the op's inputs)."""

    function, packed_metadata = "function", "packed"

    def __init__(self, log: list, inputs: list, name: str = "", stream: int = 0) -> None:
        self.log, self.inputs, self.name, self.cuda_stream = log, inputs, name, stream

    def _arg(self, a: object) -> object:
        if isinstance(a, torch.Tensor):
            return a.dtype, tuple(a.shape), any(a is x for x in self.inputs)
        return a

    def run(self, *args: object) -> None:
        self.log.append(("launch", self.name, args[:4], tuple(self._arg(a) for a in args[9:])))

    def record(self, stream: _Recorder) -> None:
        self.log.append(("record", self.name, stream.cuda_stream))

    def wait_event(self, event: _Recorder) -> None:
        self.log.append(("wait", event.name, self.cuda_stream))


def test_kept_launches_equal_the_planned_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a GPU (compiled kernels, streams and events stood in for): the first forward launches in turn through the
    JIT, the second overlapped through the keyed launches, and from the third on through the compiled kernels kept
    for the plan, with the same kernels, grids, streams and arguments as the second; an input off a 16-byte boundary
    skips the kept ones."""
    from gdkvm.ops import _launch_cache as lc
    from gdkvm.ops.frame.api import frame_gated_delta

    log, inputs = [], []
    for module in (tuning, overlap):
        monkeypatch.setattr(module, "interpreting", lambda: False)
        monkeypatch.setattr(module, "_on_gpu", lambda x: True)
    for module in (lc, overlap):
        monkeypatch.setattr(module, "usable", lambda kernel: True)
        monkeypatch.setattr(module, "current_device", lambda: 0)
        monkeypatch.setattr(module, "current_stream", lambda device: 1)
    monkeypatch.setattr(lc, "bound_args", lambda kernel, args, kwargs: [*args, "tail"])
    monkeypatch.setattr(lc, "_COMPILED", {})
    monkeypatch.setattr(overlap, "_KEPT", {})
    monkeypatch.setattr(overlap, "_COUNTERS", {})
    monkeypatch.setitem(tuning.TUNING, "walk_overlap", 2)
    monkeypatch.setitem(tuning.TUNING, "plan_launch", 1)
    compiled = lambda kernel, grid, *a, **kw: _Recorder(log, inputs, kernel.fn.__name__)  # noqa: E731
    monkeypatch.setattr(tuning, "_jit_launch", compiled)
    streams = (_Recorder(log, inputs, "main", 1), _Recorder(log, inputs, "side", 2))
    monkeypatch.setattr(
        overlap, "_SIDE", {(0, 1): (*streams, _Recorder(log, inputs, "fork"), _Recorder(log, inputs, "join"))}
    )
    inp = make_inputs(b=2, t=3, n=10, dk=32, dv=64, heads=4, with_state=True)
    inputs.extend(x for x in inp.values() if isinstance(x, torch.Tensor))
    kept, calls = [], []
    real_run_kept = overlap._run_kept
    monkeypatch.setattr(overlap, "_run_kept", lambda *a: kept.append(real_run_kept(*a)) or kept[-1])
    with torch.no_grad():
        for _ in range(4):
            log.clear()
            frame_gated_delta(**inp, output_final_state=True, backend="triton")
            calls.append(list(log))
    assert kept == [False, False, True, True]
    assert calls[0] == []  # the first: through the JIT (stood in for), in turn
    assert [entry[0] for entry in calls[1]] == ["record", "wait", "launch", "launch", "launch", "record", "wait"]
    assert calls[2] == calls[1] and calls[3] == calls[1]
    launches = [(entry[1], entry[2][3]) for entry in calls[1] if entry[0] == "launch"]
    assert launches == [("fwd_lean_kernel", 1), ("gram_kernel", 2), ("readout_kernel", 2)]  # the walk first
    shifted = torch.empty(inp["k"].numel() + 1, dtype=inp["k"].dtype)[1:].view_as(inp["k"]).copy_(inp["k"])
    with torch.no_grad():
        frame_gated_delta(**{**inp, "k": shifted}, output_final_state=True, backend="triton")  # 4 or 8 bytes off 16
    assert kept == [False, False, True, True]  # not even asked
