"""Token-rule kernels on a CUDA device at full sizes: bf16 (and fp32) inputs against the fp32 recurrent oracle run on
the same rounded inputs. o and final state within relative RMS 5e-3, every gradient within 1e-2. Skipped without
CUDA. Imports only torch, pytest and gdkvm.ops.

tests/conftest.py sets TRITON_INTERPRET=1 unless it is already set, so run these with compiled kernels:
``TRITON_INTERPRET=0 python3 -m pytest -q tests/ops/test_chunk_gpu.py``. Autotuning is opt-in (GDKVM_AUTOTUNE=1; one
of its candidates hit an illegal memory access on an H100 with triton 3.6 on 2026-11-27), so its tests run only with
GDKVM_TEST_AUTOTUNE=1.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from gdkvm.ops.gated_delta import chunk_gated_delta, naive_recurrent_gated_delta

pytestmark = pytest.mark.gpu

OUT_TOL = 5e-3
GRAD_TOL = 1e-2


@pytest.fixture(autouse=True)
def _compiled_kernels() -> None:
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.fail("GPU tests must run compiled Triton kernels: set TRITON_INTERPRET=0")


def rel_rms(ref: torch.Tensor, got: torch.Tensor) -> float:
    ref, got = ref.double(), got.double()
    return ((ref - got).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def make_inputs(
    batch, length, heads, key_dim, value_dim, *, per_channel, dtype, gate_scale=1.0, zero_gate_p=0.0, dev="cuda"
):
    """q, k L2-normalised, v randn, beta sigmoid in ``dtype``; g = logsigmoid * gate_scale in fp32, some set to 0.
    Also the inputs of ``bench/ops_token.py --check``."""
    q = F.normalize(torch.randn(batch, length, heads, key_dim, device=dev), dim=-1).to(dtype)
    k = F.normalize(torch.randn(batch, length, heads, key_dim, device=dev), dim=-1).to(dtype)
    v = torch.randn(batch, length, heads, value_dim, device=dev).to(dtype)
    gate_shape = (batch, length, heads, key_dim) if per_channel else (batch, length, heads)
    g = F.logsigmoid(torch.randn(gate_shape, device=dev)) * gate_scale
    if zero_gate_p:
        g = g * (torch.rand(gate_shape, device=dev) > zero_gate_p)
    beta = torch.sigmoid(torch.randn(batch, length, heads, device=dev)).to(dtype)
    return {"q": q, "k": k, "v": v, "g": g, "beta": beta}


def run(fn, x, h0, do, dht, **kw):
    xs = {name: t.clone().requires_grad_() for name, t in x.items()}
    h = None if h0 is None else h0.clone().requires_grad_()
    o, state = fn(**xs, initial_state=h, output_final_state=True, **kw)
    ((o.float() * do).sum() + (state * dht).sum()).backward()
    grads = {name: t.grad for name, t in xs.items()}
    if h is not None:
        grads["initial_state"] = h.grad
    return o, state, grads


CASES = [  # B, T, H, K, V, per_channel, with_h0, dtype, gate_scale, zero_gate_p
    pytest.param(2, 1000, 4, 64, 64, False, True, torch.bfloat16, 1.0, 0.0, id="B2-T1000-H4-K64-V64-bf16-h0"),
    pytest.param(2, 1500, 4, 128, 128, False, False, torch.bfloat16, 1.0, 0.5, id="B2-T1500-K128-V128-bf16-zerogate"),
    pytest.param(1, 2000, 2, 64, 32, False, True, torch.bfloat16, 0.1, 0.0, id="B1-T2000-K64-V32-bf16-slowgate"),
    pytest.param(1, 300, 2, 256, 96, False, True, torch.bfloat16, 1.0, 0.0, id="B1-T300-K256-V96-bf16-h0"),
    pytest.param(2, 500, 3, 100, 60, True, False, torch.bfloat16, 1.0, 0.0, id="B2-T500-K100-V60-chan-bf16"),
    pytest.param(1, 300, 2, 64, 48, True, True, torch.bfloat16, 10.0, 0.0, id="B1-T300-K64-V48-chan-strong-bf16"),
    pytest.param(1, 700, 2, 64, 64, False, True, torch.float32, 1.0, 0.0, id="B1-T700-K64-V64-fp32-h0"),
]


@pytest.mark.parametrize(
    ("batch", "length", "heads", "key_dim", "value_dim", "per_channel", "with_h0", "dtype", "gate_scale", "zero_p"),
    CASES,
)
def test_gpu_matches_fp32_oracle(
    batch, length, heads, key_dim, value_dim, per_channel, with_h0, dtype, gate_scale, zero_p
) -> None:
    torch.manual_seed(0)
    x = make_inputs(
        batch, length, heads, key_dim, value_dim, per_channel=per_channel, dtype=dtype, gate_scale=gate_scale,
        zero_gate_p=zero_p,
    )  # fmt: skip
    h0 = torch.randn(batch, heads, key_dim, value_dim, device="cuda") if with_h0 else None
    do = torch.randn(batch, length, heads, value_dim, device="cuda")
    dht = torch.randn(batch, heads, key_dim, value_dim, device="cuda")
    x_ref = {name: t.float() for name, t in x.items()}
    o_ref, s_ref, g_ref = run(naive_recurrent_gated_delta, x_ref, h0, do, dht)
    o, s, grads = run(chunk_gated_delta, x, h0, do, dht)
    assert o.dtype == dtype and s.dtype == torch.float32
    errors = {"o": rel_rms(o_ref, o), "state": rel_rms(s_ref, s)}
    errors |= {f"d{name}": rel_rms(ref, grads[name]) for name, ref in g_ref.items()}
    print(errors)
    assert errors["o"] < OUT_TOL and errors["state"] < OUT_TOL, errors
    for name, ref in g_ref.items():
        assert grads[name].dtype == x.get(name, ref).dtype, name
        assert errors[f"d{name}"] < GRAD_TOL, errors


def test_gpu_no_grad_and_streaming() -> None:
    torch.manual_seed(0)
    x = make_inputs(2, 777, 4, 64, 64, per_channel=False, dtype=torch.bfloat16)
    with torch.no_grad():
        o_all, s_all = chunk_gated_delta(**x, output_final_state=True)
        o1, s1 = chunk_gated_delta(**{n: t[:, :300] for n, t in x.items()}, output_final_state=True)
        o2, s2 = chunk_gated_delta(**{n: t[:, 300:] for n, t in x.items()}, initial_state=s1, output_final_state=True)
    assert rel_rms(o_all, torch.cat([o1, o2], dim=1)) < OUT_TOL
    assert rel_rms(s_all, s2) < OUT_TOL


AUTOTUNE_TESTS = os.environ.get("GDKVM_TEST_AUTOTUNE") == "1"


@pytest.mark.skipif(not AUTOTUNE_TESTS, reason="autotuning is opt-in; set GDKVM_TEST_AUTOTUNE=1 to test it")
def test_gpu_autotuned_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    # The configurations the autotuner picks.
    monkeypatch.setenv("GDKVM_AUTOTUNE", "1")
    test_gpu_matches_fp32_oracle(2, 1000, 4, 64, 64, False, True, torch.bfloat16, 1.0, 0.0)
    test_gpu_matches_fp32_oracle(2, 1500, 4, 128, 128, False, False, torch.bfloat16, 1.0, 0.5)


@pytest.mark.parametrize(
    ("batch", "length", "heads", "key_dim", "value_dim"),
    [(2, 1000, 4, 64, 64), (2, 1500, 4, 128, 128), (1, 300, 2, 256, 96)],
    ids=["K64", "K128", "K256"],
)
def test_gpu_each_launch_matches_chunk_reference(batch, length, heads, key_dim, value_dim) -> None:
    # Per-kernel twins on the GPU: each stored intermediate against the float64 chunk reference (bf16 inputs, fp32
    # intermediates, TF32 products). A race inside a program shows up here as a bad T / w / u before o.
    from gdkvm.ops.gated_delta.chunk import default_chunk_size
    from gdkvm.ops.gated_delta.chunk_bwd import launch_state_bwd
    from gdkvm.ops.gated_delta.chunk_fwd import launch_prep, launch_state_fwd
    from gdkvm.ops.gated_delta.gates import chunk_local_cumsum
    from gdkvm.ops.gated_delta.naive import chunk_reference_intermediates

    torch.manual_seed(0)
    x = make_inputs(batch, length, heads, key_dim, value_dim, per_channel=False, dtype=torch.bfloat16)
    h0 = torch.randn(batch, heads, key_dim, value_dim, device="cuda")
    do = torch.randn(batch, length, heads, value_dim, device="cuda").bfloat16()
    dht = torch.randn(batch, heads, key_dim, value_dim, device="cuda")
    scale, chunk = key_dim**-0.5, default_chunk_size(key_dim, torch.bfloat16)
    ref = chunk_reference_intermediates(**x, scale=scale, initial_state=h0, chunk_size=chunk, do=do, dht=dht)
    gc = chunk_local_cumsum(x["g"], chunk)
    prep = launch_prep(x["q"], x["k"], x["v"], gc, x["beta"], scale, chunk)
    fwd = launch_state_fwd(x["q"], x["k"], gc, prep, value_dim, scale, h0, True, True, chunk)
    bwd = launch_state_bwd(x["q"], x["k"], gc, {**prep, **fwd}, value_dim, scale, do, dht, True, chunk)
    got = {**prep, **fwd, **bwd}
    errors = {
        name: rel_rms(ref[name], got[name])
        for name in ("t_inv", "a", "w", "u", "states", "pseudo", "o", "final_state", "dstates", "dpseudo", "dh0")
    }
    print(errors)
    assert all(e < 1e-2 for e in errors.values()), errors


# B, T, H, K, V, per-channel gate, initial state: the cases of the switchable paths (both gate shapes, V 32 to 128)
PATH_CASES = ((1, 2000, 2, 64, 32, False, True), (1, 1200, 2, 64, 48, True, False), (2, 1500, 2, 128, 128, False, True))


def path_case(batch, length, heads, key_dim, value_dim, per_channel, with_h0):
    """bf16 inputs (seed 0), initial state or None, dO and the final state's gradient of one PATH_CASES entry."""
    torch.manual_seed(0)
    x = make_inputs(batch, length, heads, key_dim, value_dim, per_channel=per_channel, dtype=torch.bfloat16)
    h0 = torch.randn(batch, heads, key_dim, value_dim, device="cuda") if with_h0 else None
    do = torch.randn(batch, length, heads, value_dim, device="cuda")
    return x, h0, do, torch.randn(batch, heads, key_dim, value_dim, device="cuda")


@pytest.mark.parametrize(
    ("segments", "output", "precision"),
    [
        ("auto", "fused", "high"),
        ("6", "split", "high"),
        ("1", "split", "high"),
        ("auto", "fused", "fast"),
        ("auto", "folded", "high"),
        ("auto", "folded", "fast"),
    ],
    ids=["seg-auto", "seg6-split-o", "split-o", "fast", "folded-o", "folded-o-fast"],
)
def test_gpu_segments_and_split_output(monkeypatch: pytest.MonkeyPatch, segments, output, precision) -> None:
    # The switchable paths (GDKVM_TOKEN_SEGMENTS, GDKVM_TOKEN_O) against the oracle, both gate shapes, V = 32.
    monkeypatch.setenv("GDKVM_TOKEN_SEGMENTS", segments)
    monkeypatch.setenv("GDKVM_TOKEN_O", output)
    monkeypatch.setenv("GDKVM_TOKEN_PRECISION", precision)
    for args in PATH_CASES:
        x, h0, do, dht = path_case(*args)
        o_ref, s_ref, g_ref = run(naive_recurrent_gated_delta, {n: t.float() for n, t in x.items()}, h0, do, dht)
        o, s, grads = run(chunk_gated_delta, x, h0, do, dht)
        errors = {"o": rel_rms(o_ref, o), "state": rel_rms(s_ref, s)}
        errors |= {f"d{name}": rel_rms(ref, grads[name]) for name, ref in g_ref.items()}
        print(segments, output, precision, args, {n: f"{e:.2e}" for n, e in errors.items()})
        assert errors["o"] < OUT_TOL and errors["state"] < OUT_TOL, (args, errors)
        assert all(errors[f"d{n}"] < GRAD_TOL for n in g_ref), (args, errors)


@pytest.mark.parametrize("precision", ["high", "fast"])
def test_gpu_prepass_backward(monkeypatch: pytest.MonkeyPatch, precision: str) -> None:
    # GDKVM_TOKEN_BWD=prepass (the reverse pass's dO terms in a parallel launch first, pipelined as by default)
    # against the oracle and the four-product chain, both gate shapes, V 32 to 128.
    monkeypatch.setenv("GDKVM_TOKEN_PRECISION", precision)
    monkeypatch.setenv("GDKVM_TOKEN_SEGMENTS", "1")
    for args in PATH_CASES:
        x, h0, do, dht = path_case(*args)
        o_ref, s_ref, g_ref = run(naive_recurrent_gated_delta, {n: t.float() for n, t in x.items()}, h0, do, dht)
        monkeypatch.setenv("GDKVM_TOKEN_BWD", "chain")
        _, _, g_chain = run(chunk_gated_delta, x, h0, do, dht)
        monkeypatch.setenv("GDKVM_TOKEN_BWD", "prepass")
        o, s, grads = run(chunk_gated_delta, x, h0, do, dht)
        errors = {f"d{name}": rel_rms(ref, grads[name]) for name, ref in g_ref.items()}
        errors |= {f"d{name} vs chain": rel_rms(g_chain[name], grads[name]) for name in g_ref}
        print(precision, args, {n: f"{e:.2e}" for n, e in errors.items()})
        assert rel_rms(o_ref, o) < OUT_TOL and rel_rms(s_ref, s) < OUT_TOL, args
        assert all(errors[f"d{n}"] < GRAD_TOL and errors[f"d{n} vs chain"] < 1e-3 for n in g_ref), (args, errors)


def test_gpu_long_v32(monkeypatch: pytest.MonkeyPatch) -> None:
    # The benchmark's B1 T25600 H8 K64 V32 regime (segment-parallel scan, no grad): o at a long clip with V = 32,
    # with the heuristic and (GDKVM_TEST_AUTOTUNE=1) the autotuned configurations.
    torch.manual_seed(0)
    x = make_inputs(1, 12800, 8, 64, 32, per_channel=False, dtype=torch.bfloat16)
    with torch.no_grad():
        o_ref = naive_recurrent_gated_delta(**{n: t.float() for n, t in x.items()})[0]
        errors = {}
        for tune in ("0", "1") if AUTOTUNE_TESTS else ("0",):
            monkeypatch.setenv("GDKVM_AUTOTUNE", tune)
            errors[f"autotune{tune}"] = rel_rms(o_ref, chunk_gated_delta(**x)[0])
    print("long V32", errors)
    assert all(e < OUT_TOL for e in errors.values()), errors


@pytest.mark.parametrize("precision", ["high", "fast"])
def test_gpu_forward_in_pieces_on_a_side_stream(monkeypatch: pytest.MonkeyPatch, precision: str) -> None:
    # GDKVM_TOKEN_OVERLAP: the preps of later pieces run on a side stream while the state pass walks earlier ones.
    # Same kernels, same arithmetic: o, final state and gradients equal the one-launch forward, eagerly and from a
    # CUDA graph (fork and join of the side stream inside the capture).
    monkeypatch.setenv("GDKVM_TOKEN_PRECISION", precision)
    monkeypatch.setenv("GDKVM_TOKEN_SEGMENTS", "1")
    torch.manual_seed(0)
    x = make_inputs(4, 4000, 8, 64, 64, per_channel=False, dtype=torch.bfloat16)
    h0 = torch.randn(4, 8, 64, 64, device="cuda")
    do = torch.randn(4, 4000, 8, 64, device="cuda")
    dht = torch.randn(4, 8, 64, 64, device="cuda")
    monkeypatch.setenv("GDKVM_TOKEN_OVERLAP", "off")
    o_ref, s_ref, g_ref = run(chunk_gated_delta, x, h0, do, dht)
    monkeypatch.setenv("GDKVM_TOKEN_OVERLAP", "4")
    o, s, grads = run(chunk_gated_delta, x, h0, do, dht)
    torch.testing.assert_close(o, o_ref, rtol=0, atol=0)
    torch.testing.assert_close(s, s_ref, rtol=0, atol=0)
    for name, ref in g_ref.items():
        torch.testing.assert_close(grads[name], ref, rtol=0, atol=0, msg=name)
    with torch.no_grad():
        for _ in range(2):  # compile outside the capture
            chunk_gated_delta(**x, initial_state=h0, output_final_state=True)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            o_graph, s_graph = chunk_gated_delta(**x, initial_state=h0, output_final_state=True)
        graph.replay()
        torch.cuda.synchronize()
    torch.testing.assert_close(o_graph, o_ref, rtol=0, atol=0)
    torch.testing.assert_close(s_graph, s_ref, rtol=0, atol=0)
