"""Memoised launch plans of the frame op (``tuning.planned``) and the launches keyed by them (``launch_planned``), on
the CPU: the keys, and the forward and streaming step run through the keyed path under the interpreter."""

from __future__ import annotations

import pytest
import torch

from gdkvm.ops import frame_gated_delta, frame_gated_delta_step
from gdkvm.ops.frame import triton_fwd, triton_step, tuning
from tests.ops.test_frame_naive import make_inputs


def test_planned_memoises_per_arguments_and_tuning(monkeypatch: pytest.MonkeyPatch) -> None:
    made = []

    @tuning.planned
    def plan(a: int, b: str) -> object:
        made.append((a, b))
        return object()

    first = plan(1, "x")
    assert plan(1, "x") is first and made == [(1, "x")]
    assert plan(2, "x") is not first
    monkeypatch.setitem(tuning.TUNING, "gram_warps", int(tuning.TUNING["gram_warps"]) * 2)
    assert plan(1, "x") is not first and len(made) == 3  # another TUNING table: planned again
    fwd = triton_fwd._fwd_plan(2, 3, 37, 16, 32, 2, torch.float32, torch.device("cpu"), True, False)
    assert triton_fwd._fwd_plan(2, 3, 37, 16, 32, 2, torch.float32, torch.device("cpu"), True, False) is fwd
    assert triton_fwd._fwd_plan(2, 3, 38, 16, 32, 2, torch.float32, torch.device("cpu"), True, False)[-1] is not fwd[-1]


class _Keyed:
    """Stands in for ``_launch_cache.keyed_launch``: records each key, then launches through the JIT as the real one
    does for a key it has not seen (under the interpreter nothing compiled can be called directly)."""

    def __init__(self) -> None:
        self.keys: list[tuple] = []

    def __call__(self, key: tuple, kernel: object, grid: tuple, slow, *args: object, **kwargs: object) -> object:  # noqa: ANN001
        self.keys.append((kernel, key))
        return slow(kernel, grid, *args, **kwargs)


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> _Keyed:
    """The keyed launch path switched on as on a GPU, its keys recorded."""
    fake = _Keyed()
    monkeypatch.setattr(tuning, "keyed_launch", fake)
    monkeypatch.setattr(tuning, "interpreting", lambda: False)
    monkeypatch.setattr(tuning, "_on_gpu", lambda x: True)
    monkeypatch.setitem(tuning.TUNING, "plan_launch", 1)
    return fake


def test_launch_planned_keys_on_token_and_alignment(keyed: _Keyed, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(tuning, "_jit_launch", lambda kernel, grid, *a, **kw: seen.append((grid, a, kw)))
    x = torch.zeros(16)
    token = object()
    tuning.launch_planned(token, "k", (1,), x, x, 7, BK=16)
    tuning.launch_planned(token, "k", (1,), x, x[1:], 7, BK=16)  # the second pointer 4 bytes off 16
    tuning.launch_planned(token, "k", (1,), x[2:], x, 7, BK=16)
    assert [key for _, key in keyed.keys] == [(token, 0), (token, 0b10), (token, 0b01)]
    assert len(seen) == 3 and seen[1][2] == {"BK": 16}
    monkeypatch.setitem(tuning.TUNING, "plan_launch", 0)  # off, or without a plan: the plain launch
    tuning.launch_planned(token, "k", (1,), x, x, 7, BK=16)
    tuning.launch_planned(None, "k", (1,), x, x, 7, BK=16)
    assert len(keyed.keys) == 3 and len(seen) == 5


def test_forward_through_keyed_launches_matches_plain(keyed: _Keyed) -> None:
    """Every launch of a forward carries its plan's token (one per plan), a repeated call the same keys, a misaligned
    input another key; the results equal those of the plain launch path."""
    inp = make_inputs(b=2, t=3, n=37, dk=16, dv=32, heads=2, with_state=True)
    kw = dict(heads=2, initial_state=inp["initial_state"], output_final_state=True, backend="triton")
    args = [inp[name] for name in ("k", "v", "w_beta", "w_alpha", "a_log", "dt_bias")]
    with torch.no_grad():
        o, final = frame_gated_delta(*args, **kw)
        first = list(keyed.keys)
        assert len(first) == 3 and len({key[0] for _, key in first}) == 1  # Gram, walk, readout: one token
        frame_gated_delta(*args, **kw)
        assert keyed.keys[3:] == first
        shifted = torch.empty(inp["k"].numel() + 1)[1:].view_as(inp["k"]).copy_(inp["k"])  # 4 bytes off 16
        o2, _ = frame_gated_delta(shifted, *args[1:], **kw)
        assert [key for _, key in keyed.keys[6:]] != [key for _, key in first]
        tuning.TUNING["plan_launch"] = 0
        o_plain, final_plain = frame_gated_delta(*args, **kw)
    assert len(keyed.keys) == 9
    torch.testing.assert_close(o, o_plain, rtol=0, atol=0)
    torch.testing.assert_close(final, final_plain, rtol=0, atol=0)
    torch.testing.assert_close(o2, o_plain, rtol=0, atol=0)


def test_streaming_step_through_keyed_launches(keyed: _Keyed) -> None:
    inp = make_inputs(b=2, t=2, n=20, dk=16, dv=32, heads=2, with_state=False)
    params = [inp[name] for name in ("w_beta", "w_alpha", "a_log", "dt_bias")]
    state = None
    for t in range(2):
        o_t, state = frame_gated_delta_step(
            inp["k"][:, t], inp["v"][:, t], *params, heads=2, state=state, backend="triton"
        )
    assert [kernel for kernel, _ in keyed.keys] == [triton_step.step_kernel] * 2
    assert keyed.keys[0][1][0] is not keyed.keys[1][1][0]  # the first frame (no state) has a plan of its own
    o, _ = frame_gated_delta(inp["k"], inp["v"], *params, heads=2, backend="naive")
    torch.testing.assert_close(o_t, o[:, 1], rtol=1e-4, atol=1e-5)
