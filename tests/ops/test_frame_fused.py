"""The one-launch forward of the frame rule (``triton_fwd_fused``) under the interpreter: its kernel in phased
launches (Gram tasks, walkers, readouts; every wait already satisfied), against the reference, with and without the
backward's checkpoint, at several Gram column groupings. The one cooperative launch itself runs on a GPU only
(tests/ops/test_frame_gpu.py)."""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from gdkvm.ops import frame_gated_delta
from gdkvm.ops.frame.tiles import wait_frames
from gdkvm.ops.frame.tuning import TUNING
from tests.ops.test_frame_naive import make_inputs
from tests.ops.test_frame_triton import TOL, assert_match, rel_rms, run

SHAPES = [
    pytest.param((2, 3, 37, 16, 32, 2), id="B2T3N37Dk16Dv32H2"),
    pytest.param((1, 3, 13, 64, 64, 2), id="B1T3N13Dk64Dv64H2"),
    pytest.param((2, 3, 10, 48, 96, 6), id="B2T3N10Dk48Dv96H6"),  # padded heads and keys, 6 heads of 16
    pytest.param((1, 1, 70, 20, 64, 4), id="B1T1N70Dk20Dv64H4"),  # one frame, more pixels than a readout tile
]


@triton.jit
def probe(flag_ptr, out_ptr, T, target, W: tl.constexpr):
    t = tl.program_id(0)
    tl.store(out_ptr + t, wait_frames(flag_ptr, t, T, target, W))


@pytest.fixture
def phased(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setitem(TUNING, "fused_fwd", 2)
    return monkeypatch


@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_forward_and_gradients_match_reference(shape: tuple, with_state: bool, phased: pytest.MonkeyPatch):
    b, t, n, dk, dv, h = shape
    inp = make_inputs(b=b, t=t, n=n, dk=dk, dv=dv, heads=h, with_state=with_state)
    assert_match(run(inp, "triton"), run(inp, "naive"), TOL)


@pytest.mark.parametrize("gram_heads", [1, 2, 4])
@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
def test_fused_inference_forward_matches_reference(with_state: bool, gram_heads: int, phased: pytest.MonkeyPatch):
    """Without gradients the states overwrite K^T V in place; Gram tasks of one, two or all four heads."""
    phased.setitem(TUNING, "gram_heads", gram_heads)
    inp = make_inputs(b=2, t=3, n=21, dk=24, dv=64, heads=4, with_state=with_state)
    with torch.no_grad():
        o, final = frame_gated_delta(**inp, output_final_state=True, backend="triton")
    o_ref, final_ref = frame_gated_delta(**inp, output_final_state=True, backend="naive")
    assert rel_rms(o, o_ref) <= TOL and rel_rms(final, final_ref) <= TOL


def test_fused_path_is_taken(phased: pytest.MonkeyPatch) -> None:
    """The phased launches run the fused kernel (not the three-launch forward) where the layout allows it."""
    from gdkvm.ops.frame import triton_fwd_fused

    calls = []
    phased.setattr(triton_fwd_fused, "frame_fwd", lambda *a, **k: calls.append(1))
    inp = make_inputs(b=1, t=2, n=9, dk=16, dv=32, heads=2, with_state=False)
    with torch.no_grad():
        o, _ = frame_gated_delta(**inp, backend="triton")
    assert not calls and o.shape == (1, 2, 9, 32)
    phased.setitem(TUNING, "fused_fwd", 0)
    with pytest.raises(TypeError):  # the three-launch forward (replaced above) is called instead
        frame_gated_delta(**inp, backend="triton")
    assert calls == [1]


def test_fused_readout_tasks_of_several_value_tiles(phased: pytest.MonkeyPatch) -> None:
    phased.setitem(TUNING, "fused_read_cols", 256)
    inp = make_inputs(b=2, t=2, n=70, dk=16, dv=192, heads=4, with_state=True)
    with torch.no_grad():
        o, final = frame_gated_delta(**inp, output_final_state=True, backend="triton")
    o_ref, final_ref = frame_gated_delta(**inp, output_final_state=True, backend="naive")
    assert rel_rms(o, o_ref) <= TOL and rel_rms(final, final_ref) <= TOL


def test_wait_frames_returns_the_first_incomplete_frame() -> None:
    """A walker's wait reads the Gram counters of several frames at once and reports how far it may run."""
    counts = [3, 3, 1, 3, 3, 3, 0]  # frames 2 and 6 incomplete (target 3)
    flags = torch.tensor([[c, 0] for c in counts], dtype=torch.int32)
    out = torch.full((7,), -1, dtype=torch.int32)
    probe[(2,)](flags, out, 7, 3, W=4)  # frames 0 and 1 are complete, so the waits return at once
    assert out[:2].tolist() == [2, 2]
    out = torch.full((7,), -1, dtype=torch.int32)
    probe[(6,)](flags[3:].contiguous(), out, 3, 3, W=4)  # frames 3..5 of the clip as a 3-frame clip: all complete
    assert out[:3].tolist() == [3, 3, 3]
