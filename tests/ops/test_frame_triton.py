"""Triton kernels of the frame rule under the interpreter (CPU): forward, final state, every gradient, streaming."""

from __future__ import annotations

import pytest
import torch

from gdkvm.errors import InputError
from gdkvm.ops import frame_gated_delta, frame_gated_delta_step
from tests.ops.test_frame_naive import make_inputs

GRAD_NAMES = ("k", "v", "w_beta", "w_alpha", "a_log", "dt_bias", "initial_state")
TOL = 1e-3

SHAPES = [
    pytest.param((2, 3, 37, 16, 32, 2), id="B2T3N37Dk16Dv32H2"),
    pytest.param((1, 1, 5, 12, 30, 3), id="B1T1N5Dk12Dv30H3"),
    pytest.param((2, 4, 19, 12, 30, 3), id="B2T4N19Dk12Dv30H3"),
    pytest.param((1, 2, 70, 20, 96, 4), id="B1T2N70Dk20Dv96H4"),
    pytest.param((1, 3, 20, 70, 40, 20), id="B1T3N20Dk70Dv40H20"),
    pytest.param((1, 3, 13, 64, 64, 2), id="B1T3N13Dk64Dv64H2-head-tiles"),  # value tiles inside one head
    pytest.param((2, 2, 9, 64, 128, 2), id="B2T2N9Dk64Dv128H2-head-tiles"),
    pytest.param((2, 3, 10, 48, 96, 6), id="B2T3N10Dk48Dv96H6-parallel"),  # parallel recurrence, padded heads and keys
]


@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
def test_one_program_recurrence_matches_reference(with_state: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback recurrences (one program per clip, forward and reverse) at a shape the parallel ones would take."""
    from gdkvm.ops.frame.triton_fwd import TUNING

    monkeypatch.setitem(TUNING, "fast_path", 0)
    monkeypatch.setitem(TUNING, "bwd_sliced", 0)
    inp = make_inputs(b=2, t=3, n=10, dk=48, dv=96, heads=6, with_state=with_state)
    assert_match(run(inp, "triton"), run(inp, "naive"), TOL)


def test_wide_backward_tiles_match_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backward recurrence with heads padded to 32 and wider value tiles (the configuration that lets it run 8
    warps on a GPU; ``bwd_wide`` in bench/ops_frame.py's sweep)."""
    from gdkvm.ops.frame.triton_fwd import TUNING

    wide = {"bwd_sliced": 0, "bwd_min_bh": 32, "bwd_state_tile": 2048, "bwd_light_tile": 4096, "bwd_warps": 8}
    for knob, value in wide.items():
        monkeypatch.setitem(TUNING, knob, value)
    inp = make_inputs(b=2, t=3, n=11, dk=48, dv=64, heads=4, with_state=True)
    assert_match(run(inp, "triton"), run(inp, "naive"), TOL)


@pytest.mark.parametrize("slice_width", [16, 64], ids=["inside-heads", "across-heads"])
def test_sliced_backward_at_other_slice_widths(slice_width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The value-sliced reverse walk with slices narrower than a head (two per head) and wider (two heads each)."""
    from gdkvm.ops.frame.triton_fwd import TUNING

    monkeypatch.setitem(TUNING, "bwd_slice", slice_width)
    inp = make_inputs(b=2, t=3, n=9, dk=20, dv=128, heads=4, with_state=True)
    assert_match(run(inp, "triton"), run(inp, "naive"), TOL)


@pytest.mark.parametrize("cols", [32, 128, 256])
def test_wide_gram_programs_match_reference(cols: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Gram pre-pass (and the backward's K^T dO) with ``cols`` value columns per program in one tile, pixels
    outside: whole heads and their gate projections (Dv/H = 16, padded heads and keys), tiles past Dv (96 < 128)."""
    from gdkvm.ops.frame.triton_fwd import TUNING

    monkeypatch.setitem(TUNING, "gram_cols", cols)
    inp = make_inputs(b=2, t=3, n=70, dk=48, dv=96, heads=6, with_state=True)
    assert_match(run(inp, "triton"), run(inp, "naive"), TOL)
    inp = make_inputs(b=1, t=2, n=20, dk=24, dv=80, heads=5, with_state=False)  # one-program recurrence, no R
    assert_match(run(inp, "triton"), run(inp, "naive"), TOL)


@pytest.mark.parametrize("lean", [0, 1], ids=["walk", "lean"])
@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
def test_recurrence_slices_of_several_heads(lean: int, with_state: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parallel recurrence (old walk and lean walk) with value slices of whole heads (2 and 4 heads of 16 columns
    per program: per-column gates), as ``walker_slice`` chooses where a batch has more slices than the GPU has SMs;
    with and without gradients."""
    from gdkvm.ops.frame.triton_fwd import TUNING

    monkeypatch.setitem(TUNING, "fast_lean", lean)
    monkeypatch.setitem(TUNING, "fast_wide_slices", 2)
    monkeypatch.setitem(TUNING, "fast_max_slice", 64)
    for b, t, n, dk, dv, h in ((2, 3, 10, 48, 96, 6), (2, 2, 9, 20, 64, 4)):
        assert_matches_with_and_without_gradients(
            make_inputs(b=b, t=t, n=n, dk=dk, dv=dv, heads=h, with_state=with_state)
        )


@pytest.mark.parametrize("lean", [0, 1, 2], ids=["walk", "lean", "lean-two-heads"])
@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
def test_lean_recurrence_matches_reference(lean: int, with_state: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lean parallel recurrence (joined gate projections, K^T K split for hand-made 3xTF32) against the reference,
    and the old walk it replaces (lean 0): exact sizes (no bounds masks), padded keys and heads, one frame, slices of
    two and four heads (lean 2); with gradients and in place."""
    from gdkvm.ops.frame import triton_lean
    from gdkvm.ops.frame.triton_fwd import TUNING

    monkeypatch.setitem(TUNING, "fast_lean", int(lean > 0))
    monkeypatch.setitem(TUNING, "fast_wide_slices", 2 if lean == 2 else 0)
    calls = []
    monkeypatch.setattr("gdkvm.ops.frame.triton_fwd.fwd_lean_kernel", _Spy(triton_lean.fwd_lean_kernel, calls))
    monkeypatch.setattr("gdkvm.ops.frame.tuning._PLANS", {})  # no plan made before holds the real kernel (or a spy)
    for b, t, n, dk, dv, h in ((2, 3, 10, 32, 64, 4), (2, 4, 9, 20, 96, 6), (1, 1, 5, 16, 64, 2)):
        assert_matches_with_and_without_gradients(
            make_inputs(b=b, t=t, n=n, dk=dk, dv=dv, heads=h, with_state=with_state)
        )
    assert bool(calls) == bool(lean)
    if lean == 2:  # walker_slice widened the first shape's slices to 64 columns: all four heads of 16 in one program
        assert calls[0] == (2, 1)


@pytest.mark.parametrize("hand", [0, 1], ids=["tl-dot", "hand-made"])
@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
def test_walk_reads_out(hand: int, with_state: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lean walk writing O_t itself (``walk_readout``, no readout launch): pixels in several ragged tiles of 16
    (N 37) and in one (N 9), padded keys and heads, one frame, slices of two heads; with gradients and in place."""
    from gdkvm.ops.frame import overlap, triton_fwd

    monkeypatch.setitem(triton_fwd.TUNING, "walk_readout", 2)
    monkeypatch.setitem(triton_fwd.TUNING, "walk_read_tile", 16 * 32)  # 16 pixels per tile at the padded Dk 32
    monkeypatch.setitem(triton_fwd.TUNING, "readout_hand3", hand)
    reads, real = [], triton_fwd.launch_planned
    for module in (triton_fwd, overlap):  # (the walk with the Gram beside it launches from overlap)
        spy = lambda *a, **kw: reads.append((a[1], kw.get("READ"))) or real(*a, **kw)  # noqa: E731
        monkeypatch.setattr(module, "launch_planned", spy)
    for b, t, n, dk, dv, h in ((2, 3, 37, 20, 96, 6), (1, 1, 9, 32, 64, 4), (2, 2, 9, 16, 64, 2)):
        assert_matches_with_and_without_gradients(
            make_inputs(b=b, t=t, n=n, dk=dk, dv=dv, heads=h, with_state=with_state)
        )
    walks = [read for kernel, read in reads if kernel is triton_fwd.fwd_lean_kernel]
    assert len(walks) == 6 and all(walks)  # two forwards per shape, each with the walk reading out
    assert triton_fwd.readout_kernel not in [kernel for kernel, _ in reads]
    monkeypatch.setitem(triton_fwd.TUNING, "walk_readout", 1)
    monkeypatch.setitem(triton_fwd.TUNING, "walk_read_max_t", 2)
    assert triton_fwd.walk_reads(2) and not triton_fwd.walk_reads(3)


@pytest.mark.parametrize(("own", "per"), [(1, 1), (0, 1), (1, 2)], ids=["own-head", "blocks", "two-heads"])
def test_gram_gate_projections(own: int, per: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Gram pre-pass's gate projections: one head per program against its own weight rows (``gram_own_head``;
    3 heads padded to 4, the product padded to 16 columns), the block products of every head, programs of two
    heads; with gradients."""
    from gdkvm.ops.frame.triton_fwd import TUNING

    monkeypatch.setitem(TUNING, "gram_own_head", own)
    monkeypatch.setitem(TUNING, "gram_heads", per)
    for b, t, n, dk, dv, h in ((2, 3, 37, 20, 48, 3), (1, 2, 9, 16, 128, 8)):
        inp = make_inputs(b=b, t=t, n=n, dk=dk, dv=dv, heads=h, with_state=t == 2)
        assert_match(run(inp, "triton"), run(inp, "naive"), TOL)


def test_gram_kk_spread_over_column_programs(monkeypatch: pytest.MonkeyPatch) -> None:
    """K^T K computed by the Gram pre-pass's column programs, 16 or more of its columns each (``gram_kk_spread``): by
    head with gate projections (padded keys: 20 of 32), the plain column tiles of the one-program recurrence (no
    projections), one head's program covering all of K^T K; with gradients and in place."""
    from gdkvm.ops.frame import triton_gram
    from gdkvm.ops.frame.triton_fwd import TUNING

    monkeypatch.setitem(TUNING, "gram_kk_spread", 1)
    monkeypatch.setitem(TUNING, "walk_overlap", 0)  # the Gram launched on its own, by frame and program
    grids, real = [], triton_gram.launch_planned
    monkeypatch.setattr(triton_gram, "launch_planned", lambda *a, **kw: grids.append(a[2]) or real(*a, **kw))
    for b, t, n, dk, dv, h in ((2, 3, 37, 20, 96, 6), (1, 2, 20, 24, 72, 3), (2, 2, 9, 48, 32, 1)):
        assert_matches_with_and_without_gradients(make_inputs(b=b, t=t, n=n, dk=dk, dv=dv, heads=h, with_state=b == 2))
    assert grids[0] == (6, 6)  # six head programs per frame, no K^T K program
    assert (2, 2) in grids  # the 72 value columns of the one-program recurrence's shape in two tiles of 64, no more


@pytest.mark.parametrize("cols", [0, 128], ids=["by-head", "wide"])
def test_gram_in_hand_made_3xtf32(cols: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Gram pre-pass (and the backward's K^T dO) with ``gram_hand3`` and the readout with ``readout_hand3``: fp32
    pixel products and gate projections in hand-made 3xTF32 (``tiles.dot_acc``), by-head and wide Gram programs,
    with gradients; bf16 inputs keep TF32."""
    from gdkvm.ops.frame.triton_fwd import TUNING

    monkeypatch.setitem(TUNING, "gram_hand3", 1)
    monkeypatch.setitem(TUNING, "readout_hand3", 1)
    monkeypatch.setitem(TUNING, "gram_cols", cols)
    for with_state in (False, True):
        inp = make_inputs(b=2, t=3, n=70, dk=48, dv=96, heads=6, with_state=with_state)
        assert_match(run(inp, "triton"), run(inp, "naive"), TOL)


@pytest.mark.parametrize("hand", [0, 1], ids=["tf32x3", "hand-made"])
@pytest.mark.parametrize("cols", [0, 128], ids=["one-tile", "looped"])
def test_readout_column_loop(cols: int, hand: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Readout programs of several 64-column tiles (``readout_cols``; K_t's rows loaded, and split, once), with and
    without the hand-made 3xTF32, on ragged pixels and values (Dv = 192: the second program's loop ends early)."""
    from gdkvm.ops.frame import triton_fwd

    monkeypatch.setitem(triton_fwd.TUNING, "readout_cols", cols)
    monkeypatch.setitem(triton_fwd.TUNING, "readout_hand3", hand)
    loops, real = [], triton_fwd.launch_planned
    monkeypatch.setattr(triton_fwd, "launch_planned", lambda *a, **kw: loops.append(kw.get("LOOP")) or real(*a, **kw))
    inp = make_inputs(b=2, t=3, n=70, dk=48, dv=192, heads=6, with_state=True)
    assert_match(run(inp, "triton"), run(inp, "naive"), TOL)
    assert loops.count(True) == (1 if cols else 0)  # the looped readout ran (other launches pass no LOOP)


@pytest.mark.parametrize("bv", [16, 32])
def test_readout_narrow_value_tiles(bv: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Readout tiles of fewer value columns than pixels (``readout_bv``): ragged pixels and values, Dv = 80 not a
    multiple of 32; alone and looped over several tiles per program."""
    from gdkvm.ops.frame import triton_fwd

    monkeypatch.setitem(triton_fwd.TUNING, "readout_bv", bv)
    inp = make_inputs(b=2, t=3, n=70, dk=48, dv=80, heads=5, with_state=True)
    assert_match(run(inp, "triton"), run(inp, "naive"), TOL)
    monkeypatch.setitem(triton_fwd.TUNING, "readout_cols", 64)
    assert_match(run(inp, "triton"), run(inp, "naive"), TOL)
    plan = triton_fwd._fwd_plan(2, 3, 70, 48, 80, 5, torch.float32, torch.device("cpu"), True, True)
    assert plan[6]["meta"]["BV"] == bv and plan[6]["meta"]["BN"] == 64


@pytest.mark.parametrize(("n", "stages"), [(64, 1), (65, 2), (256, 2)])
def test_gram_pipelines_only_several_pixel_tiles(n: int, stages: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Gram pre-pass takes one software-pipelining stage where one pixel tile covers the frame (measured faster
    on an H100 at N64), TUNING["gram_stages"] otherwise; the results match the reference either way."""
    from gdkvm.ops.frame import triton_gram

    monkeypatch.setitem(triton_gram.TUNING, "gram_stages", 2)
    seen = []
    real = triton_gram.launch_planned
    monkeypatch.setattr(triton_gram, "launch_planned", lambda *a, **kw: seen.append(kw["num_stages"]) or real(*a, **kw))
    inp = make_inputs(b=1, t=2, n=n, dk=64, dv=64, heads=2, with_state=False)
    assert_match(run(inp, "triton"), run(inp, "naive"), TOL)
    assert seen and set(seen) == {stages}, seen


class _Spy:
    """Stands in for a Triton kernel, recording each launch's grid before launching it."""

    def __init__(self, kernel: object, calls: list) -> None:
        self.kernel, self.calls = kernel, calls

    def __getitem__(self, grid: tuple) -> object:
        self.calls.append(grid)
        return self.kernel[grid]


def assert_matches_with_and_without_gradients(inp: dict) -> None:
    """Forward, final state and gradients against the reference, then the forward without gradients (states in
    place)."""
    assert_match(run(inp, "triton"), run(inp, "naive"), TOL)
    with torch.no_grad():
        o, final = frame_gated_delta(**inp, output_final_state=True, backend="triton")
    o_ref, final_ref = frame_gated_delta(**inp, output_final_state=True, backend="naive")
    assert rel_rms(o, o_ref) <= TOL and rel_rms(final, final_ref) <= TOL


def rel_rms(x: torch.Tensor, ref: torch.Tensor) -> float:
    """RMS of the error relative to the RMS of the reference (0 when both are 0)."""
    err = (x.double() - ref.double()).pow(2).mean().sqrt()
    scale = ref.double().pow(2).mean().sqrt()
    return 0.0 if err == 0 else float(err / scale)


def run(inp: dict, backend: str, *, loss_on: str = "both") -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Forward and backward of a fixed random loss; returns o, final state and the gradients by name."""
    x = {n: (t.clone().requires_grad_(True) if isinstance(t, torch.Tensor) else t) for n, t in inp.items()}
    o, final = frame_gated_delta(**x, output_final_state=True, backend=backend)
    gen = torch.Generator().manual_seed(1)
    loss = 0.0
    if loss_on in ("both", "o"):
        loss = loss + (o * torch.randn(o.shape, generator=gen)).sum()
    if loss_on in ("both", "state"):
        loss = loss + (final * torch.randn(final.shape, generator=gen)).sum()
    loss.backward()
    grads = {n: x[n].grad for n in GRAD_NAMES if x[n] is not None}
    return o.detach(), final.detach(), grads


def assert_match(got: tuple, ref: tuple, tol: float) -> None:
    assert rel_rms(got[0], ref[0]) <= tol, f"o: {rel_rms(got[0], ref[0]):.2e}"
    assert rel_rms(got[1], ref[1]) <= tol, f"final state: {rel_rms(got[1], ref[1]):.2e}"
    for name, g_ref in ref[2].items():
        g = got[2][name]
        if g_ref is None:  # not on the autograd path of the reference (T = 1 without initial state)
            assert g is None or torch.count_nonzero(g) == 0, name
            continue
        assert g is not None, name
        assert rel_rms(g, g_ref) <= tol, f"d{name}: {rel_rms(g, g_ref):.2e}"


@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
@pytest.mark.parametrize("shape", SHAPES)
def test_triton_matches_reference(shape: tuple, with_state: bool) -> None:
    b, t, n, dk, dv, h = shape
    inp = make_inputs(b=b, t=t, n=n, dk=dk, dv=dv, heads=h, with_state=with_state)
    assert_match(run(inp, "triton"), run(inp, "naive"), TOL)


@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
@pytest.mark.parametrize("shape", SHAPES)
def test_inference_forward_matches_reference(shape: tuple, with_state: bool) -> None:
    """Without gradients the states overwrite K^T V in place (a separate code path)."""
    b, t, n, dk, dv, h = shape
    inp = make_inputs(b=b, t=t, n=n, dk=dk, dv=dv, heads=h, with_state=with_state)
    with torch.no_grad():
        o, final = frame_gated_delta(**inp, output_final_state=True, backend="triton")
    o_ref, final_ref = frame_gated_delta(**inp, output_final_state=True, backend="naive")
    assert rel_rms(o, o_ref) <= TOL and rel_rms(final, final_ref) <= TOL


@pytest.mark.parametrize("loss_on", ["o", "state"])
def test_gradients_from_one_output_only(loss_on: str) -> None:
    inp = make_inputs(b=2, t=3, n=13, dk=16, dv=32, heads=4, with_state=True)
    assert_match(run(inp, "triton", loss_on=loss_on), run(inp, "naive", loss_on=loss_on), TOL)


def test_no_final_state_requested() -> None:
    inp = make_inputs(b=1, t=2, n=9, dk=16, dv=16, heads=1)
    o, final = frame_gated_delta(**inp, backend="triton")
    ref, _ = frame_gated_delta(**inp, backend="naive")
    assert final is None
    assert rel_rms(o, ref) <= TOL


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 21, 16, 32, 2), (1, 2, 40, 70, 80, 5), (1, 2, 7, 64, 64, 2)],
    ids=["Dk16Dv32", "Dk70Dv80", "Dk64H2"],
)
@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
def test_streaming_step_equals_whole_clip(with_state: bool, shape: tuple) -> None:
    b, t_len, n, dk, dv, h = shape
    inp = make_inputs(b=b, t=t_len, n=n, dk=dk, dv=dv, heads=h, with_state=with_state)
    o, final = frame_gated_delta(**inp, output_final_state=True, backend="triton")
    params = {n: inp[n] for n in ("w_beta", "w_alpha", "a_log", "dt_bias")}
    state = inp["initial_state"]
    for t in range(t_len):
        o_t, state = frame_gated_delta_step(
            inp["k"][:, t], inp["v"][:, t], **params, heads=h, state=state, backend="triton"
        )
        assert o_t.shape == (b, n, dv) and state.shape == (b, dk, dv) and state.dtype == torch.float32
        torch.testing.assert_close(o_t, o[:, t], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state, final, rtol=1e-5, atol=1e-6)


def test_non_contiguous_inputs() -> None:
    inp = make_inputs(b=2, t=3, n=11, dk=16, dv=32, heads=2)
    inp["k"] = inp["k"].transpose(0, 1).contiguous().transpose(0, 1)
    inp["v"] = inp["v"][..., :32]
    assert not inp["k"].is_contiguous()
    assert_match(run(inp, "triton"), run(inp, "naive"), TOL)


def test_auto_backend_looks_for_triton_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The auto backend's check that Triton is installed runs once per process, not on every call (find_spec took
    tens of microseconds of each forward's host time)."""
    import importlib.util

    from gdkvm.ops.frame import api

    looked, real = [], importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: looked.append(name) or real(name, *a))
    api._triton_available.cache_clear()
    assert api._triton_available() and api._triton_available() and api._triton_available()
    assert looked == ["triton"]


def test_auto_uses_reference_on_cpu_and_triton_limits() -> None:
    inp = make_inputs(b=1, t=2, n=5, dk=16, dv=16, heads=2)
    o_auto, _ = frame_gated_delta(**inp)
    o_ref, _ = frame_gated_delta(**inp, backend="naive")
    assert torch.equal(o_auto, o_ref)
    big = make_inputs(b=1, t=1, n=3, dk=130, dv=16, heads=2)
    with pytest.raises(InputError, match=r"Dk <= 128 and Dv <= 512, got Dk=130"):
        frame_gated_delta(**big, backend="triton")
    many = make_inputs(b=1, t=1, n=3, dk=16, dv=128, heads=128)
    with pytest.raises(InputError, match=r"heads <= 64, got 128"):
        frame_gated_delta(**many, backend="triton")
    with pytest.raises(InputError, match="float32 or bfloat16"):
        frame_gated_delta(**make_inputs(dtype=torch.float64), backend="triton")
