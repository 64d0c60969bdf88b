"""The reverse state pass with its dO terms computed beforehand (GDKVM_TOKEN_BWD=prepass, chunk_bwd_pre.py) against
the four-product chain and the fp32 recurrent oracle (Triton interpreter), and the default's choice between them."""

from __future__ import annotations

import pytest
import torch

from gdkvm.ops.gated_delta import naive_recurrent_gated_delta
from gdkvm.ops.gated_delta.chunk import chunk_gated_delta_triton
from tests.ops.gpu_like import patch_gpu_like
from tests.ops.test_chunk_naive import make_inputs, rel_rms
from tests.ops.test_chunk_triton import GRAD_TOL, OUT_TOL, _run

CASES = [  # length, K, V, chunk, per-channel gate, initial state, dtype, precision
    pytest.param(70, 24, 20, 16, False, True, torch.float32, "high", id="T70-K24-V20-C16-head-h0"),
    pytest.param(45, 20, 80, 32, True, False, torch.float32, "high", id="T45-K20-V80-C32-chan"),
    pytest.param(130, 32, 24, 64, False, True, torch.bfloat16, "high", id="T130-K32-V24-C64-head-bf16"),
    pytest.param(130, 32, 24, 64, False, False, torch.bfloat16, "fast", id="T130-K32-V24-C64-head-bf16-fast"),
]


@pytest.fixture
def gpu_dots(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_gpu_like(monkeypatch)  # TF32 and real bf16 products, as on the GPU


@pytest.mark.parametrize(("length", "key_dim", "value_dim", "chunk", "per_channel", "with_h0", "dtype", "precision"),
                         CASES)  # fmt: skip
def test_prepass_backward_matches_default(
    gpu_dots, monkeypatch: pytest.MonkeyPatch, length, key_dim, value_dim, chunk, per_channel, with_h0, dtype,
    precision,
) -> None:  # fmt: skip
    # Same arithmetic moved between kernels: the gradients equal the chain's (to rounding) and the oracle's.
    monkeypatch.setenv("GDKVM_TOKEN_PRECISION", precision)
    x = make_inputs(1, length, 2, key_dim, value_dim, per_channel=per_channel, dtype=dtype)
    h0 = torch.randn(1, 2, key_dim, value_dim) if with_h0 else None
    do, dht = torch.randn(1, length, 2, value_dim), torch.randn(1, 2, key_dim, value_dim)
    kw = dict(scale=key_dim**-0.5, chunk_size=chunk)
    monkeypatch.setenv("GDKVM_TOKEN_BWD", "chain")
    _, _, g_default = _run(chunk_gated_delta_triton, x, h0, do, dht, **kw)
    from gdkvm.ops.gated_delta import chunk_bwd, chunk_bwd_pre

    calls = []
    real = chunk_bwd_pre.launch_state_bwd_pre
    monkeypatch.setattr(chunk_bwd, "launch_state_bwd_pre", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setenv("GDKVM_TOKEN_BWD", "prepass")
    o, s, grads = _run(chunk_gated_delta_triton, x, h0, do, dht, **kw)
    assert calls == [1]
    o_ref, s_ref, g_ref = _run(naive_recurrent_gated_delta, {n: t.float() for n, t in x.items()}, h0, do, dht)
    factor = 2 if precision == "fast" else 1
    assert rel_rms(o_ref, o) < factor * OUT_TOL and rel_rms(s_ref, s) < factor * OUT_TOL
    assert set(grads) == set(g_default) == set(g_ref)
    for name, ref in g_ref.items():
        assert torch.isfinite(grads[name]).all(), name
        assert rel_rms(g_default[name], grads[name]) < 1e-5, (name, rel_rms(g_default[name], grads[name]))
        assert rel_rms(ref, grads[name]) < factor * GRAD_TOL, f"d{name}: {rel_rms(ref, grads[name]):.3g}"


def test_prepass_runs_only_where_it_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    # With segments the default reverse pass runs (its phase 3 starts segments mid-clip); a bad mode is refused.
    from gdkvm.ops.gated_delta import chunk_bwd, chunk_bwd_pre

    calls = []
    real = chunk_bwd_pre.launch_state_bwd_pre
    monkeypatch.setattr(chunk_bwd, "launch_state_bwd_pre", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = make_inputs(1, 100, 2, 16, 16, per_channel=False)
    do, dht = torch.randn(1, 100, 2, 16), torch.randn(1, 2, 16, 16)
    o_ref, s_ref, g_ref = _run(naive_recurrent_gated_delta, x, None, do, dht)
    monkeypatch.setenv("GDKVM_TOKEN_BWD", "prepass")
    for segments, used in (("1", 1), ("3", 0)):
        monkeypatch.setenv("GDKVM_TOKEN_SEGMENTS", segments)
        calls.clear()
        _, _, grads = _run(chunk_gated_delta_triton, x, None, do, dht, scale=0.25, chunk_size=16)
        assert len(calls) == used, segments
        for name, ref in g_ref.items():
            assert rel_rms(ref, grads[name]) < GRAD_TOL, (segments, name)
    monkeypatch.setenv("GDKVM_TOKEN_BWD", "pre")
    with pytest.raises(ValueError, match="GDKVM_TOKEN_BWD"):
        _run(chunk_gated_delta_triton, x, None, do, dht, scale=0.25, chunk_size=16)


@pytest.mark.parametrize(("sm_count", "used"), [(132, 1), (1, 0)])
def test_auto_takes_prepass_in_one_wave(monkeypatch: pytest.MonkeyPatch, sm_count: int, used: int) -> None:
    # GDKVM_TOKEN_BWD unset ("auto"): the prepass while the chain's programs fit one wave of SM_COUNT, else the chain
    # (here 2 heads x 1 value tile: 2 programs).
    from gdkvm.ops.gated_delta import chunk_bwd, chunk_bwd_pre

    calls = []
    real = chunk_bwd_pre.launch_state_bwd_pre
    monkeypatch.setattr(chunk_bwd, "launch_state_bwd_pre", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(chunk_bwd, "SM_COUNT", sm_count)
    monkeypatch.delenv("GDKVM_TOKEN_BWD", raising=False)
    monkeypatch.setenv("GDKVM_TOKEN_SEGMENTS", "1")
    x = make_inputs(1, 40, 2, 16, 16, per_channel=False)
    do, dht = torch.randn(1, 40, 2, 16), torch.randn(1, 2, 16, 16)
    _, _, g_ref = _run(naive_recurrent_gated_delta, x, None, do, dht)
    _, _, grads = _run(chunk_gated_delta_triton, x, None, do, dht, scale=0.25, chunk_size=16)
    assert len(calls) == used
    for name, ref in g_ref.items():
        assert rel_rms(ref, grads[name]) < GRAD_TOL, name
