"""The token rule's forward in pieces (``GDKVM_TOKEN_OVERLAP``, ``chunk_overlap``): the chunk ranges, and the same o,
final state and gradients as the one-launch forward (on the CPU the pieces run in order; the arithmetic is the same,
so the results agree to rounding), with and without an initial state, with the split output kernel, and switched
off where the state pass uses segments."""

from __future__ import annotations

import pytest
import torch

from gdkvm.ops.gated_delta.chunk import chunk_gated_delta_triton
from gdkvm.ops.gated_delta.chunk_overlap import piece_ranges
from tests.ops.test_chunk_naive import make_inputs


def test_piece_ranges_cover_the_chunks_in_order() -> None:
    assert piece_ranges(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert piece_ranges(2, 4) == [(0, 1), (1, 2)]  # never an empty piece
    assert piece_ranges(7, 1) == [(0, 7)]


def _forward_backward(x: dict[str, torch.Tensor], h0: torch.Tensor | None) -> list[torch.Tensor]:
    xs = {n: t.clone().requires_grad_() for n, t in x.items()}
    h = None if h0 is None else h0.clone().requires_grad_()
    o, state = chunk_gated_delta_triton(**xs, scale=0.3, initial_state=h, output_final_state=True, chunk_size=16)
    torch.manual_seed(1)
    ((o * torch.randn_like(o)).sum() + (state * torch.randn_like(state)).sum()).backward()
    return [o.detach(), state.detach(), *(xs[n].grad for n in xs), *([] if h is None else [h.grad])]


@pytest.mark.parametrize(
    ("with_h0", "env"),
    [
        pytest.param(True, {}, id="h0"),
        pytest.param(False, {}, id="no-h0"),
        pytest.param(True, {"GDKVM_TOKEN_O": "split"}, id="h0-split-o"),
        pytest.param(False, {"GDKVM_TOKEN_SEGMENTS": "2"}, id="segments-turn-it-off"),
    ],
)
def test_pieces_match_one_launch(monkeypatch: pytest.MonkeyPatch, with_h0: bool, env: dict[str, str]) -> None:
    monkeypatch.setenv("GDKVM_TOKEN_SEGMENTS", "1")  # "auto" would cut these few programs into segments
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    x = make_inputs(2, 150, 2, 24, 20, per_channel=False, dtype=torch.float32)
    h0 = torch.randn(2, 2, 24, 20) if with_h0 else None
    monkeypatch.setenv("GDKVM_TOKEN_OVERLAP", "off")
    whole = _forward_backward(x, h0)
    from gdkvm.ops.gated_delta import chunk_fwd

    launched: list[list[tuple[int, int]]] = []
    real = chunk_fwd._state_pieces

    def recording(*args: object) -> None:
        launched.append(list(args[4]))
        real(*args)

    monkeypatch.setattr(chunk_fwd, "_state_pieces", recording)
    monkeypatch.setenv("GDKVM_TOKEN_OVERLAP", "3")  # 10 chunks of 16 tokens -> pieces of 3, 4 and 3 chunks
    pieces = _forward_backward(x, h0)
    segmented = "GDKVM_TOKEN_SEGMENTS" in env
    assert launched == ([] if segmented else [[(0, 3), (3, 7), (7, 10)]])
    for a, b in zip(whole, pieces, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_bad_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GDKVM_TOKEN_OVERLAP", "two")
    x = make_inputs(1, 40, 1, 8, 8, per_channel=False, dtype=torch.float32)
    with pytest.raises(ValueError, match="GDKVM_TOKEN_OVERLAP"):
        chunk_gated_delta_triton(**x, scale=0.3, chunk_size=16)
