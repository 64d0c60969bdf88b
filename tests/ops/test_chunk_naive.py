"""The token-rule references: the recurrent loop against a hand-unrolled recurrence, the chunk form against the loop
(both gate shapes, odd sizes, several chunk sizes), float64 gradcheck, and the validation of the public function."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gdkvm.errors import InputError
from gdkvm.ops.gated_delta import chunk_gated_delta, naive_chunk_gated_delta, naive_recurrent_gated_delta


def make_inputs(
    batch: int,
    length: int,
    heads: int,
    key_dim: int,
    value_dim: int,
    *,
    per_channel: bool,
    dtype: torch.dtype = torch.float32,
    gate_scale: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Random inputs in FLA's test regime: L2-normalised q, k; logsigmoid gates; sigmoid beta."""
    q = F.normalize(torch.randn(batch, length, heads, key_dim, dtype=torch.float64), dim=-1)
    k = F.normalize(torch.randn(batch, length, heads, key_dim, dtype=torch.float64), dim=-1)
    v = torch.randn(batch, length, heads, value_dim, dtype=torch.float64)
    gate_shape = (batch, length, heads, key_dim) if per_channel else (batch, length, heads)
    g = F.logsigmoid(torch.randn(gate_shape, dtype=torch.float64)) * gate_scale
    beta = torch.sigmoid(torch.randn(batch, length, heads, dtype=torch.float64))
    return {name: x.to(dtype) for name, x in dict(q=q, k=k, v=v, g=g, beta=beta).items()}


def rel_rms(ref: torch.Tensor, got: torch.Tensor) -> float:
    ref, got = ref.double(), got.double()
    return ((ref - got).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def test_recurrent_matches_hand_unrolled_two_steps() -> None:
    x = make_inputs(1, 2, 1, 3, 2, per_channel=True, dtype=torch.float64)
    s0 = torch.randn(1, 1, 3, 2, dtype=torch.float64)
    o, st = naive_recurrent_gated_delta(**x, scale=0.5, initial_state=s0, output_final_state=True)
    state = s0[0, 0]
    for t in range(2):
        k_t, v_t, b_t = x["k"][0, t, 0], x["v"][0, t, 0], x["beta"][0, t, 0]
        decayed = torch.diag(x["g"][0, t, 0].exp()) @ state
        eye = torch.eye(3, dtype=torch.float64)
        state = (eye - b_t * torch.outer(k_t, k_t)) @ decayed + b_t * torch.outer(k_t, v_t)
        torch.testing.assert_close(o[0, t, 0], state.T @ (0.5 * x["q"][0, t, 0]))
    torch.testing.assert_close(st[0, 0], state)


@pytest.mark.parametrize(
    ("length", "key_dim", "value_dim", "chunk", "per_channel", "with_h0"),
    [
        pytest.param(70, 24, 20, 16, False, True, id="T70-K24-V20-C16-head-h0"),
        pytest.param(70, 24, 20, 64, True, False, id="T70-K24-V20-C64-chan"),
        pytest.param(33, 17, 5, 32, True, True, id="T33-K17-V5-C32-chan-h0"),
        pytest.param(1, 8, 8, 64, False, False, id="T1"),
    ],
)
def test_chunk_form_matches_recurrence(
    length: int, key_dim: int, value_dim: int, chunk: int, per_channel: bool, with_h0: bool
) -> None:
    x = make_inputs(2, length, 2, key_dim, value_dim, per_channel=per_channel, dtype=torch.float64)
    h0 = torch.randn(2, 2, key_dim, value_dim, dtype=torch.float64) if with_h0 else None
    o_ref, s_ref = naive_recurrent_gated_delta(**x, initial_state=h0, output_final_state=True)
    o, s = naive_chunk_gated_delta(**x, initial_state=h0, output_final_state=True, chunk_size=chunk)
    assert rel_rms(o_ref, o) < 1e-10
    assert rel_rms(s_ref, s) < 1e-10


def test_chunk_form_survives_strong_per_channel_decay() -> None:
    # Gates down to -40 per token: exp(-G_j) alone would overflow; only exp(G_i - G_j) with i >= j is ever formed.
    x = make_inputs(1, 40, 1, 8, 4, per_channel=True, dtype=torch.float64, gate_scale=40.0)
    o_ref, s_ref = naive_recurrent_gated_delta(**x, output_final_state=True)
    o, s = naive_chunk_gated_delta(**x, output_final_state=True, chunk_size=32)
    assert torch.isfinite(o).all()
    assert rel_rms(o_ref, o) < 1e-10
    assert rel_rms(s_ref, s) < 1e-10


@pytest.mark.parametrize("per_channel", [False, True], ids=["head", "chan"])
def test_naive_gradcheck_float64(per_channel: bool) -> None:
    x = make_inputs(1, 5, 1, 3, 2, per_channel=per_channel, dtype=torch.float64)
    h0 = torch.randn(1, 1, 3, 2, dtype=torch.float64)
    args = [t.clone().requires_grad_() for t in (x["q"], x["k"], x["v"], x["g"], x["beta"], h0)]

    def fn(q, k, v, g, beta, state):
        o, st = naive_recurrent_gated_delta(q, k, v, g, beta, initial_state=state, output_final_state=True)
        return o, st

    assert torch.autograd.gradcheck(fn, args)


def test_public_function_cpu_path_matches_oracle() -> None:
    x = make_inputs(1, 19, 2, 12, 6, per_channel=False)
    h0 = torch.randn(1, 2, 12, 6)
    o_ref, s_ref = naive_recurrent_gated_delta(**x, initial_state=h0, output_final_state=True)
    o, s = chunk_gated_delta(**x, initial_state=h0, output_final_state=True)
    assert o.dtype == torch.float32 and s.dtype == torch.float32
    assert rel_rms(o_ref, o) < 1e-6 and rel_rms(s_ref, s) < 1e-6
    o2, s2 = chunk_gated_delta(**x)
    assert s2 is None
    assert rel_rms(naive_recurrent_gated_delta(**x)[0], o2) < 1e-6


def _bad(**changes: object) -> dict[str, object]:
    x: dict[str, object] = dict(make_inputs(1, 8, 2, 4, 3, per_channel=False))
    x.update(changes)
    return x


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        pytest.param({"q": torch.randn(1, 8, 2)}, r"q must be \[B, T, H, K\].*\(1, 8, 2\)", id="q-rank"),
        pytest.param({"k": torch.randn(1, 8, 2, 5)}, r"k must have the shape of q.*got \(1, 8, 2, 5\)", id="k-shape"),
        pytest.param({"v": torch.randn(1, 7, 2, 3)}, r"v.*\(1, 7, 2, 3\)", id="v-shape"),
        pytest.param({"g": torch.randn(1, 8, 3)}, r"g.*\(1, 8, 3\)", id="g-shape"),
        pytest.param({"beta": torch.rand(1, 8, 2, 1)}, r"beta.*\(1, 8, 2, 1\)", id="beta-shape"),
        pytest.param({"initial_state": torch.zeros(1, 2, 3, 4)}, r"initial_state.*\(1, 2, 3, 4\)", id="h0-shape"),
        pytest.param({"v": torch.randn(1, 8, 2, 3, dtype=torch.float64)}, r"dtype", id="dtype-mix"),
        pytest.param({"q": torch.randint(0, 3, (1, 8, 2, 4))}, r"q.*floating", id="int"),
        pytest.param({"k": torch.randn(1, 8, 2, 300), "q": torch.randn(1, 8, 2, 300)}, r"K <= 256", id="K-too-big"),
    ],
)
def test_public_function_validates(changes: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        chunk_gated_delta(**_bad(**changes))


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(InputError, match="backend"):
        chunk_gated_delta(**_bad(), backend="cuda-magic")
