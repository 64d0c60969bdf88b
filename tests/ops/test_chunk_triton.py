"""Triton chunkwise kernels (run by the CPU interpreter) against the fp32 recurrent oracle: outputs, final state and
every gradient, for both gate shapes, odd T, K and V, several chunk sizes, with and without an initial state."""

from __future__ import annotations

import pytest
import torch

from gdkvm.ops.gated_delta import chunk_gated_delta, naive_recurrent_gated_delta
from gdkvm.ops.gated_delta.chunk import chunk_gated_delta_triton
from tests.ops.gpu_like import patch_gpu_like
from tests.ops.test_chunk_naive import make_inputs, rel_rms

OUT_TOL = 5e-3
GRAD_TOL = 1e-2


def _run(fn, x: dict[str, torch.Tensor], h0: torch.Tensor | None, do: torch.Tensor, dht: torch.Tensor, **kw):
    """o, final state and the gradients of (o * do).sum() + (state * dht).sum() wrt every input."""
    xs = {name: t.clone().requires_grad_() for name, t in x.items()}
    h = None if h0 is None else h0.clone().requires_grad_()
    o, state = fn(**xs, initial_state=h, output_final_state=True, **kw)
    ((o.float() * do).sum() + (state * dht).sum()).backward()
    grads = {name: t.grad for name, t in xs.items()}
    if h is not None:
        grads["initial_state"] = h.grad
    return o, state, grads


CASES = [
    pytest.param(70, 24, 20, 16, False, True, 1.0, id="T70-K24-V20-C16-head-h0"),
    pytest.param(70, 24, 20, 64, False, False, 1.0, id="T70-K24-V20-C64-head"),
    pytest.param(70, 24, 20, 16, True, True, 1.0, id="T70-K24-V20-C16-chan-h0"),
    pytest.param(45, 20, 80, 32, True, False, 1.0, id="T45-K20-V80-C32-chan"),
    pytest.param(50, 12, 36, 16, False, True, 0.0, id="T50-K12-V36-C16-zero-gate-h0"),
    pytest.param(40, 16, 16, 16, True, True, 20.0, id="T40-K16-V16-C16-chan-strong-gate"),
]


@pytest.mark.parametrize(("length", "key_dim", "value_dim", "chunk", "per_channel", "with_h0", "gate_scale"), CASES)
def test_triton_matches_recurrence(
    length: int, key_dim: int, value_dim: int, chunk: int, per_channel: bool, with_h0: bool, gate_scale: float
) -> None:
    x = make_inputs(1, length, 2, key_dim, value_dim, per_channel=per_channel, gate_scale=gate_scale)
    h0 = torch.randn(1, 2, key_dim, value_dim) if with_h0 else None
    do = torch.randn(1, length, 2, value_dim)
    dht = torch.randn(1, 2, key_dim, value_dim)
    o_ref, s_ref, g_ref = _run(naive_recurrent_gated_delta, x, h0, do, dht)
    o, s, grads = _run(chunk_gated_delta_triton, x, h0, do, dht, scale=key_dim**-0.5, chunk_size=chunk)
    assert o.shape == o_ref.shape and s.shape == s_ref.shape and s.dtype == torch.float32
    assert rel_rms(o_ref, o) < OUT_TOL
    assert rel_rms(s_ref, s) < OUT_TOL
    assert set(grads) == set(g_ref)
    for name, ref in g_ref.items():
        assert grads[name].shape == ref.shape, name
        assert torch.isfinite(grads[name]).all(), name
        assert rel_rms(ref, grads[name]) < GRAD_TOL, f"d{name}: {rel_rms(ref, grads[name]):.3g}"


def test_public_function_triton_backend_on_cpu() -> None:
    x = make_inputs(2, 21, 1, 8, 12, per_channel=False)
    o_ref, _ = naive_recurrent_gated_delta(**x, scale=0.3)
    o, state = chunk_gated_delta(**x, scale=0.3, backend="triton")
    assert state is None
    assert rel_rms(o_ref, o) < OUT_TOL


def test_streaming_two_calls_equals_one_call() -> None:
    # The state contract: a clip split in two calls, the second starting from the first's final state.
    x = make_inputs(1, 40, 2, 16, 16, per_channel=True)
    first = {n: t[:, :23] for n, t in x.items()}
    second = {n: t[:, 23:] for n, t in x.items()}
    o_all, s_all = chunk_gated_delta_triton(**x, scale=0.25, output_final_state=True, chunk_size=16)
    o1, s1 = chunk_gated_delta_triton(**first, scale=0.25, output_final_state=True, chunk_size=16)
    o2, s2 = chunk_gated_delta_triton(**second, scale=0.25, initial_state=s1, output_final_state=True, chunk_size=16)
    assert rel_rms(o_all, torch.cat([o1, o2], dim=1)) < 1e-5
    assert rel_rms(s_all, s2) < 1e-5


def test_no_grad_forward_matches() -> None:
    x = {name: t.requires_grad_() for name, t in make_inputs(1, 30, 1, 16, 16, per_channel=False).items()}
    with torch.no_grad():
        o, _ = chunk_gated_delta_triton(**x, scale=0.25, chunk_size=16)
        o_ref, _ = naive_recurrent_gated_delta(**x, scale=0.25)
    assert not o.requires_grad
    assert rel_rms(o_ref, o) < OUT_TOL


def test_only_final_state_in_loss() -> None:
    # The gradient of an unused output arrives as zeros; the state path alone must still be right.
    x = make_inputs(1, 37, 2, 16, 12, per_channel=False)
    grads = []
    for fn, kw in ((naive_recurrent_gated_delta, {}), (chunk_gated_delta_triton, {"chunk_size": 16})):
        xs = {name: t.clone().requires_grad_() for name, t in x.items()}
        _, state = fn(**xs, scale=0.25, output_final_state=True, **kw)
        state.square().sum().backward()
        grads.append({name: t.grad for name, t in xs.items()})
    assert grads[0]["q"] is None and torch.count_nonzero(grads[1]["q"]) == 0  # q only reaches o
    for name in ("k", "v", "g", "beta"):
        assert rel_rms(grads[0][name], grads[1][name]) < GRAD_TOL, name


def test_bad_chunk_size_is_rejected() -> None:
    x = make_inputs(1, 8, 1, 16, 16, per_channel=False)
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_gated_delta_triton(**x, scale=0.25, chunk_size=48)


@pytest.fixture()
def gpu_like_dot(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interpreter's tl.dot and bf16 rounding as on the GPU (tests/ops/gpu_like.py): the interpreter alone
    cannot run bf16 dots."""
    patch_gpu_like(monkeypatch)


BF16_CASES = [
    pytest.param(150, 64, 48, False, True, "high", id="T150-K64-V48-head-h0"),
    pytest.param(150, 64, 48, False, True, "fast", id="T150-K64-V48-head-h0-fast"),
    pytest.param(90, 40, 24, True, False, "high", id="T90-K40-V24-chan"),
]


@pytest.mark.parametrize(("length", "key_dim", "value_dim", "per_channel", "with_h0", "precision"), BF16_CASES)
def test_bf16_inputs_with_gpu_like_products(
    gpu_like_dot, monkeypatch: pytest.MonkeyPatch, length, key_dim, value_dim, per_channel, with_h0, precision
) -> None:
    # bf16 inputs at chunk 64 with TF32 products, as on the GPU (the interpreter alone cannot run bf16 dots).
    monkeypatch.setenv("GDKVM_TOKEN_PRECISION", precision)
    x = make_inputs(1, length, 2, key_dim, value_dim, per_channel=per_channel, dtype=torch.bfloat16)
    h0 = torch.randn(1, 2, key_dim, value_dim) if with_h0 else None
    do = torch.randn(1, length, 2, value_dim)
    dht = torch.randn(1, 2, key_dim, value_dim)
    o_ref, s_ref, g_ref = _run(naive_recurrent_gated_delta, {n: t.float() for n, t in x.items()}, h0, do, dht)
    o, s, grads = _run(chunk_gated_delta_triton, x, h0, do, dht, scale=key_dim**-0.5, chunk_size=64)
    factor = 2 if precision == "fast" else 1
    assert o.dtype == torch.bfloat16
    assert rel_rms(o_ref, o) < factor * OUT_TOL
    assert rel_rms(s_ref, s) < factor * OUT_TOL
    for name, ref in g_ref.items():
        assert rel_rms(ref, grads[name]) < factor * GRAD_TOL, f"d{name}: {rel_rms(ref, grads[name]):.3g}"


INTERMEDIATE_CASES = [
    pytest.param(140, 64, 40, 64, False, torch.float32, id="T140-K64-V40-C64-head-fp32"),
    pytest.param(140, 64, 40, 64, False, torch.bfloat16, id="T140-K64-V40-C64-head-bf16"),
    pytest.param(75, 24, 20, 32, True, torch.float32, id="T75-K24-V20-C32-chan-fp32"),
]


@pytest.mark.parametrize(("length", "key_dim", "value_dim", "chunk", "per_channel", "dtype"), INTERMEDIATE_CASES)
def test_each_launch_matches_chunk_reference(
    gpu_like_dot, length, key_dim, value_dim, chunk, per_channel, dtype
) -> None:
    # Per-kernel twins (FLA's test_gdn_kernels model): every stored intermediate against the float64 chunk reference.
    from gdkvm.ops.gated_delta.chunk_bwd import launch_state_bwd
    from gdkvm.ops.gated_delta.chunk_fwd import launch_prep, launch_state_fwd
    from gdkvm.ops.gated_delta.gates import chunk_local_cumsum
    from gdkvm.ops.gated_delta.naive import chunk_reference_intermediates

    x = make_inputs(2, length, 2, key_dim, value_dim, per_channel=per_channel, dtype=dtype)
    h0 = torch.randn(2, 2, key_dim, value_dim)
    do = torch.randn(2, length, 2, value_dim).to(dtype)
    dht = torch.randn(2, 2, key_dim, value_dim)
    scale = key_dim**-0.5
    ref = chunk_reference_intermediates(**x, scale=scale, initial_state=h0, chunk_size=chunk, do=do, dht=dht)
    gc = chunk_local_cumsum(x["g"], chunk)
    prep = launch_prep(x["q"], x["k"], x["v"], gc, x["beta"], scale, chunk)
    fwd = launch_state_fwd(x["q"], x["k"], gc, prep, value_dim, scale, h0, True, True, chunk)
    saved = {**prep, **fwd}
    bwd = launch_state_bwd(x["q"], x["k"], gc, saved, value_dim, scale, do, dht, True, chunk)
    got = {**prep, **fwd, **bwd}
    tol = 2e-3 if dtype == torch.float32 else 1e-2  # TF32 products; bf16 rounding of o
    for name in ("t_inv", "a", "w", "u", "states", "pseudo", "o", "final_state", "dstates", "dpseudo", "dh0"):
        assert got[name].shape == ref[name].shape, name
        assert rel_rms(ref[name], got[name]) < tol, f"{name}: {rel_rms(ref[name], got[name]):.3g}"


@pytest.mark.parametrize(
    ("per_channel", "segments", "output"),
    [
        (False, "3", "fused"),
        (False, "4", "split"),
        (True, "3", "split"),
        (False, "1", "split"),
        (False, "1", "folded"),
        (True, "3", "folded"),
    ],
    ids=["head-seg3", "head-seg4-split-o", "chan-seg3-split-o", "head-split-o", "head-folded-o", "chan-seg3-folded-o"],
)
def test_segment_parallel_and_split_output(
    monkeypatch: pytest.MonkeyPatch, per_channel: bool, segments: str, output: str
) -> None:
    # The segment-parallel scan (per-segment affine summaries, serial combine, per-segment replay) and the parallel
    # output kernel give the plain path's numbers: 10 chunks of 16 with a partial last one, several value and
    # transition column tiles, initial state and final-state gradient.
    monkeypatch.setenv("GDKVM_TOKEN_SEGMENTS", segments)
    monkeypatch.setenv("GDKVM_TOKEN_O", output)
    torch.manual_seed(1)
    x = make_inputs(1, 150, 2, 24, 20, per_channel=per_channel, gate_scale=0.1)
    h0 = torch.randn(1, 2, 24, 20)
    do = torch.randn(1, 150, 2, 20)
    dht = torch.randn(1, 2, 24, 20)
    o_ref, s_ref, g_ref = _run(naive_recurrent_gated_delta, x, h0, do, dht)
    o, s, grads = _run(chunk_gated_delta_triton, x, h0, do, dht, scale=24**-0.5, chunk_size=16)
    assert rel_rms(o_ref, o) < 1e-5 and rel_rms(s_ref, s) < 1e-5
    for name, ref in g_ref.items():
        assert rel_rms(ref, grads[name]) < 1e-5, name


def test_launch_heuristic_and_config_override(monkeypatch: pytest.MonkeyPatch) -> None:
    from gdkvm.ops.gated_delta.launch import heuristic

    monkeypatch.delenv("GDKVM_TOKEN_CONFIG", raising=False)
    assert heuristic("prep", 64, 64, 32)["num_warps"] == 4  # measured 2x faster than 8 on an H100 up to K 128
    assert heuristic("prep", 256, 64, 32)["num_warps"] == 8
    assert heuristic("state", 128, 128, 32)["BV"] == 32  # K 128: no narrower than 32 columns
    assert heuristic("state_bwd", 64, 64, 32)["BV"] == heuristic("state", 64, 64, 32)["BV"] == 16
    # 16-bit intermediates: 2 warps for the kernels that miscompile at 4 on Hopper (triton 3.6)
    assert heuristic("prep", 64, 64, 32, narrow=True)["num_warps"] == 2
    assert heuristic("state_bwd", 64, 64, 32, narrow=True)["num_warps"] == 2
    assert heuristic("state", 64, 64, 32, narrow=True)["num_warps"] == heuristic("state", 64, 64, 32)["num_warps"]
    monkeypatch.setenv("GDKVM_TOKEN_CONFIG", '{"prep": {"num_warps": 8, "BV": 32}, "state": {"unknown": 1}}')
    assert heuristic("prep", 64, 64, 32) | {"num_stages": 0} == {"BV": 32, "num_warps": 8, "num_stages": 0}
    assert "unknown" not in heuristic("state", 64, 64, 32)
    monkeypatch.setenv("GDKVM_TOKEN_CONFIG", "prep=4")
    with pytest.raises(ValueError, match="GDKVM_TOKEN_CONFIG"):
        heuristic("prep", 64, 64, 32)


def test_precision_mode_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from gdkvm.ops.gated_delta.launch import check_precision_mode

    monkeypatch.setenv("GDKVM_TOKEN_PRECISION", "bf16")
    with pytest.raises(RuntimeError, match="must be 'high' or 'fast'"):
        check_precision_mode(torch.device("cpu"))
    monkeypatch.setenv("GDKVM_TOKEN_PRECISION", "fast")
    check_precision_mode(torch.device("cpu"))
    check_precision_mode(torch.device("cuda"))  # allowed on CUDA since 2-warp prep / reverse pass (see heuristic)


@pytest.mark.parametrize(("length", "chunk"), [(150, 64), (75, 32), (40, 16)])
def test_solve_modes_agree(monkeypatch: pytest.MonkeyPatch, length, chunk) -> None:
    # GDKVM_TOKEN_SOLVE=regs (the chunk inverse in registers) and =doubling (recursive doubling on tensor cores)
    # against the scratch solve and the float64 reference, including a partial last chunk.
    from gdkvm.ops.gated_delta.chunk_fwd import launch_prep
    from gdkvm.ops.gated_delta.gates import chunk_local_cumsum
    from gdkvm.ops.gated_delta.naive import chunk_reference_intermediates

    x = make_inputs(1, length, 2, 24, 20, per_channel=False, dtype=torch.float32)
    gc = chunk_local_cumsum(x["g"], chunk)
    ref = chunk_reference_intermediates(**x, scale=0.2, initial_state=None, chunk_size=chunk)
    preps = {}
    for mode in ("scratch", "regs", "doubling"):
        monkeypatch.setenv("GDKVM_TOKEN_SOLVE", mode)
        preps[mode] = launch_prep(x["q"], x["k"], x["v"], gc, x["beta"], 0.2, chunk)
    for name in ("t_inv", "w", "u"):
        for mode in ("regs", "doubling"):
            assert rel_rms(ref[name], preps[mode][name]) < 1e-5, (mode, name)
            torch.testing.assert_close(preps[mode][name], preps["scratch"][name], rtol=1e-5, atol=1e-6)
    # Hard case for any inverse: near-parallel keys, beta near 1 and no decay (entries of T grow with the chunk).
    torch.manual_seed(3)
    hard = make_inputs(1, length, 2, 24, 20, per_channel=False, dtype=torch.float32, gate_scale=0.0)
    base = torch.nn.functional.normalize(torch.randn(24), dim=0)
    hard["k"] = torch.nn.functional.normalize(base + 0.3 * hard["k"], dim=-1)
    hard["beta"] = torch.full_like(hard["beta"], 0.95)
    ref = chunk_reference_intermediates(**hard, scale=0.2, initial_state=None, chunk_size=chunk)
    monkeypatch.setenv("GDKVM_TOKEN_SOLVE", "doubling")
    got = launch_prep(hard["q"], hard["k"], hard["v"], chunk_local_cumsum(hard["g"], chunk), hard["beta"], 0.2, chunk)
    assert rel_rms(ref["t_inv"], got["t_inv"]) < 1e-4 and rel_rms(ref["u"], got["u"]) < 1e-4
    from gdkvm.ops.gated_delta.launch import solve_mode

    monkeypatch.setenv("GDKVM_TOKEN_SOLVE", "auto")  # tensor-core doubling needs a warp group: 2-warp preps substitute
    assert (solve_mode(4), solve_mode(8), solve_mode(2)) == ("doubling", "doubling", "regs")
    monkeypatch.setenv("GDKVM_TOKEN_SOLVE", "registers")  # neither mode
    with pytest.raises(ValueError, match="GDKVM_TOKEN_SOLVE"):
        launch_prep(x["q"], x["k"], x["v"], gc, x["beta"], 0.2, chunk)


def test_hilo_settings_agree_and_forward_keeps_no_t(gpu_like_dot, monkeypatch: pytest.MonkeyPatch) -> None:
    # GDKVM_TOKEN_HILO picks which state passes multiply bf16 q, k by fp32 tiles as a bf16 head + tail: every setting
    # gives the same o and gradients as the oracle (within the bf16 bounds); other values are refused.
    from gdkvm.ops.gated_delta.chunk_fwd import launch_prep
    from gdkvm.ops.gated_delta.gates import chunk_local_cumsum
    from gdkvm.ops.gated_delta.launch import split16

    x = make_inputs(1, 100, 2, 32, 24, per_channel=False, dtype=torch.bfloat16)
    h0, do, dht = torch.randn(1, 2, 32, 24), torch.randn(1, 100, 2, 24), torch.randn(1, 2, 32, 24)
    o_ref, s_ref, g_ref = _run(naive_recurrent_gated_delta, {n: t.float() for n, t in x.items()}, h0, do, dht)
    for mode in ("off", "fwd", "bwd", "both"):
        monkeypatch.setenv("GDKVM_TOKEN_HILO", mode)
        assert split16(torch.bfloat16, torch.float32, "fwd") == (mode in ("fwd", "both"))
        assert not split16(torch.float16, torch.float32, "fwd") and not split16(torch.bfloat16, torch.bfloat16, "fwd")
        o, s, grads = _run(chunk_gated_delta_triton, x, h0, do, dht, scale=32**-0.5)
        assert rel_rms(o_ref, o) < OUT_TOL and rel_rms(s_ref, s) < OUT_TOL, mode
        for name, ref in g_ref.items():
            assert rel_rms(ref, grads[name]) < GRAD_TOL, (mode, name)
    monkeypatch.setenv("GDKVM_TOKEN_HILO", "on")
    with pytest.raises(ValueError, match="GDKVM_TOKEN_HILO"):
        _run(chunk_gated_delta_triton, x, h0, do, dht, scale=0.2)
    monkeypatch.delenv("GDKVM_TOKEN_HILO")
    gc = chunk_local_cumsum(x["g"], 64)
    assert launch_prep(x["q"], x["k"], x["v"], gc, x["beta"], 0.2, keep_t=False)["t_inv"] is None
    assert launch_prep(x["q"], x["k"], x["v"], gc, x["beta"], 0.2)["t_inv"].shape == (1, 100, 2, 64)


@pytest.mark.parametrize("precision", ["high", "fast"])
def test_decay_sides_agree(gpu_like_dot, monkeypatch: pytest.MonkeyPatch, precision) -> None:
    # GDKVM_TOKEN_DECAY: a per-head decay on the key-side tiles (k, q; k loaded transposed in the forward pass with
    # "keyt") or on the value-side ones gives the same o, state and gradients; "auto" takes the value side in both
    # precisions; others are refused.
    from gdkvm.ops.gated_delta.launch import key_decay

    monkeypatch.setenv("GDKVM_TOKEN_PRECISION", precision)
    x = make_inputs(1, 90, 2, 32, 24, per_channel=False, dtype=torch.bfloat16)
    h0, do, dht = torch.randn(1, 2, 32, 24), torch.randn(1, 90, 2, 24), torch.randn(1, 2, 32, 24)
    o_ref, s_ref, g_ref = _run(naive_recurrent_gated_delta, {n: t.float() for n, t in x.items()}, h0, do, dht)
    factor = 2 if precision == "fast" else 1
    for side in ("value", "key", "keyt"):
        monkeypatch.setenv("GDKVM_TOKEN_DECAY", side)
        o, s, grads = _run(chunk_gated_delta_triton, x, h0, do, dht, scale=32**-0.5)
        assert rel_rms(o_ref, o) < factor * OUT_TOL and rel_rms(s_ref, s) < factor * OUT_TOL, side
        for name, ref in g_ref.items():
            assert rel_rms(ref, grads[name]) < factor * GRAD_TOL, (side, name)
    monkeypatch.setenv("GDKVM_TOKEN_DECAY", "auto")
    assert key_decay() == 0  # the value side, whatever the precision
    monkeypatch.setenv("GDKVM_TOKEN_DECAY", "k")
    with pytest.raises(ValueError, match="GDKVM_TOKEN_DECAY"):
        key_decay()
