"""The frame-rule torch reference and the public API: math, gradients, streaming, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gdkvm.errors import InputError
from gdkvm.ops import frame_gated_delta, frame_gated_delta_step
from gdkvm.ops.frame.naive import frame_gated_delta_naive


def make_inputs(
    b: int = 2,
    t: int = 3,
    n: int = 7,
    dk: int = 4,
    dv: int = 6,
    heads: int = 2,
    dtype: torch.dtype = torch.float32,
    with_state: bool = False,
) -> dict:
    """Random inputs in the ranges the model produces (softmax keys, O(1) values, small projections)."""
    k = torch.softmax(torch.randn(b, t, n, dk, dtype=torch.float64), dim=-1)
    return {
        "k": k.to(dtype),
        "v": torch.randn(b, t, n, dv, dtype=dtype),
        "w_beta": 0.5 * torch.randn(dv, heads, dtype=dtype),
        "w_alpha": 0.5 * torch.randn(dv, heads, dtype=dtype),
        "a_log": torch.randn(heads, dtype=dtype) * 0.5,
        "dt_bias": torch.randn(heads, dtype=dtype) * 0.5,
        "initial_state": torch.randn(b, dk, dv, dtype=dtype) if with_state else None,
        "heads": heads,
    }


def numpy_reference(inp: dict) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise restatement of the rule with explicit head loops (no repeat_interleave), in float64."""
    k, v = inp["k"].double().numpy(), inp["v"].double().numpy()
    wb, wa = inp["w_beta"].double().numpy(), inp["w_alpha"].double().numpy()
    a_rate, dt = np.exp(inp["a_log"].double().numpy()), inp["dt_bias"].double().numpy()
    heads = inp["heads"]
    b_, t_, _, dk = k.shape
    dv = v.shape[-1]
    hd = dv // heads
    o = np.zeros(v.shape)
    states = np.zeros((b_, dk, dv))
    for b in range(b_):
        s = None if inp["initial_state"] is None else inp["initial_state"][b].double().numpy()
        for t in range(t_):
            kt, vt = k[b, t], v[b, t]
            if s is None:
                s = kt.T @ vt
            else:
                new = np.empty_like(s)
                for h in range(heads):
                    cols = slice(h * hd, (h + 1) * hd)
                    beta = 1 / (1 + np.exp(-(s @ wb[:, h])))
                    alpha = np.exp(-a_rate[h] * np.log1p(np.exp(s @ wa[:, h] + dt[h])))
                    gs = kt.T @ (kt @ s[:, cols])
                    write = kt.T @ vt[:, cols]
                    new[:, cols] = alpha[:, None] * (s[:, cols] - beta[:, None] * gs) + beta[:, None] * write
                s = new
            o[b, t] = kt @ s
        states[b] = s
    return o, states


@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
@pytest.mark.parametrize("t", [1, 2, 5], ids=["T1", "T2", "T5"])
def test_matches_numpy_restatement(t: int, with_state: bool) -> None:
    inp = make_inputs(t=t, with_state=with_state, dtype=torch.float64)
    o, final = frame_gated_delta(**inp, output_final_state=True, backend="naive")
    o_ref, s_ref = numpy_reference(inp)
    np.testing.assert_allclose(o.numpy(), o_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(final.numpy(), s_ref, rtol=1e-10, atol=1e-12)


def test_first_frame_writes_kv_and_reads_out() -> None:
    inp = make_inputs(t=1)
    o, final = frame_gated_delta(**inp, output_final_state=True, backend="naive")
    k, v = inp["k"][:, 0], inp["v"][:, 0]
    expected_state = k.transpose(1, 2) @ v
    torch.testing.assert_close(final, expected_state)
    torch.testing.assert_close(o[:, 0], k @ expected_state)


def test_gates_use_exp_decay_and_one_head_mapping() -> None:
    """With W = 0 the gates are constant per head: beta = 1/2, alpha = exp(-A softplus(dt)) on head h's channels."""
    inp = make_inputs(t=2, dk=3, dv=4, heads=2, dtype=torch.float64)
    inp["w_beta"] = torch.zeros(4, 2, dtype=torch.float64)
    inp["w_alpha"] = torch.zeros(4, 2, dtype=torch.float64)
    inp["a_log"] = torch.tensor([0.0, np.log(2.0)], dtype=torch.float64)
    inp["dt_bias"] = torch.tensor([0.0, 1.0], dtype=torch.float64)
    _, final = frame_gated_delta(**inp, output_final_state=True, backend="naive")
    k0, v0, k1, v1 = inp["k"][0, 0], inp["v"][0, 0], inp["k"][0, 1], inp["v"][0, 1]
    s0 = k0.T @ v0
    alpha = torch.tensor([np.exp(-np.log(2.0))] * 2 + [np.exp(-2 * np.log1p(np.e))] * 2, dtype=torch.float64)
    expected = alpha * (s0 - 0.5 * (k1.T @ k1 @ s0)) + 0.5 * (k1.T @ v1)
    torch.testing.assert_close(final[0], expected)


@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
def test_gradcheck_float64(with_state: bool) -> None:
    inp = make_inputs(b=2, t=3, n=5, dk=3, dv=4, heads=2, dtype=torch.float64, with_state=with_state)
    names = ["k", "v", "w_beta", "w_alpha", "a_log", "dt_bias"] + (["initial_state"] if with_state else [])
    tensors = [inp[n].clone().requires_grad_(True) for n in names]

    def fn(*args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kw = dict(zip(names, args))
        o, s = frame_gated_delta_naive(
            kw["k"],
            kw["v"],
            kw["w_beta"],
            kw["w_alpha"],
            kw["a_log"],
            kw["dt_bias"],
            heads=2,
            initial_state=kw.get("initial_state"),
            output_final_state=True,
        )
        return o, s

    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
def test_streaming_equals_whole_clip(with_state: bool) -> None:
    inp = make_inputs(t=4, with_state=with_state)
    o, final = frame_gated_delta(**inp, output_final_state=True)
    state = inp["initial_state"]
    params = {n: inp[n] for n in ("w_beta", "w_alpha", "a_log", "dt_bias")}
    for t in range(4):
        o_t, state = frame_gated_delta_step(inp["k"][:, t], inp["v"][:, t], **params, heads=2, state=state)
        torch.testing.assert_close(o_t, o[:, t])
    torch.testing.assert_close(state, final)


def test_split_clip_equals_whole_clip() -> None:
    inp = make_inputs(t=5)
    o, final = frame_gated_delta(**inp, output_final_state=True)
    first = {**inp, "k": inp["k"][:, :2], "v": inp["v"][:, :2]}
    o1, s1 = frame_gated_delta(**first, output_final_state=True)
    second = {**inp, "k": inp["k"][:, 2:], "v": inp["v"][:, 2:], "initial_state": s1}
    o2, s2 = frame_gated_delta(**second, output_final_state=True)
    torch.testing.assert_close(torch.cat([o1, o2], dim=1), o)
    torch.testing.assert_close(s2, final)


def test_dtypes_and_optional_final_state() -> None:
    inp = make_inputs(dtype=torch.bfloat16)
    o, final = frame_gated_delta(**inp)
    assert o.dtype == torch.bfloat16 and o.shape == inp["v"].shape
    assert final is None
    _, final = frame_gated_delta(**inp, output_final_state=True)
    assert final.dtype == torch.float32 and final.shape == (2, 4, 6)
    ref, _ = frame_gated_delta(**{**make_inputs(dtype=torch.float64)}, backend="naive")
    assert torch.isfinite(ref).all()


BAD_CASES = [
    ("k", lambda i: {**i, "k": i["k"][0]}, r"k must be \[B, T, N, Dk\], got shape \[3, 7, 4\]"),
    ("v", lambda i: {**i, "v": i["v"][:, :, :5]}, r"k \[2, 3, 7, 4\] and v \[2, 3, 5, 6\] disagree"),
    ("v_dtype", lambda i: {**i, "v": i["v"].double()}, r"k is torch.float32 but v is torch.float64"),
    ("k_int", lambda i: {**i, "k": i["k"].long()}, r"k \[2, 3, 7, 4\] must be float32 or bfloat16"),
    ("w_beta", lambda i: {**i, "w_beta": i["w_beta"].T}, r"w_beta has shape \[2, 6\], expected \[6, 2\]"),
    ("w_alpha", lambda i: {**i, "w_alpha": i["w_alpha"][:4]}, r"w_alpha has shape \[4, 2\], expected \[6, 2\]"),
    ("a_log", lambda i: {**i, "a_log": i["a_log"][:1]}, r"a_log has shape \[1\], expected \[2\]"),
    ("dt_bias", lambda i: {**i, "dt_bias": i["dt_bias"][None]}, r"dt_bias has shape \[1, 2\], expected \[2\]"),
    ("heads", lambda i: {**i, "heads": 4}, r"heads=4 does not divide the value width Dv=6"),
    ("h0", lambda i: {**i, "initial_state": torch.zeros(2, 6, 4)}, r"initial_state has shape \[2, 6, 4\]"),
    ("empty", lambda i: {**i, "k": i["k"][:, :0], "v": i["v"][:, :0]}, r"k has an empty dimension"),
    ("backend", lambda i: {**i, "backend": "cuda"}, r"backend must be one of"),
]


@pytest.mark.parametrize(("make_bad", "message"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_inputs_raise_clear_errors(make_bad, message: str) -> None:
    with pytest.raises(InputError, match=message):
        frame_gated_delta(**make_bad(make_inputs()))


def test_bad_step_inputs() -> None:
    inp = make_inputs()
    params = {n: inp[n] for n in ("w_beta", "w_alpha", "a_log", "dt_bias")}
    with pytest.raises(InputError, match=r"k_t must be \[B, N, Dk\], got shape \[2, 3, 7, 4\]"):
        frame_gated_delta_step(inp["k"], inp["v"], **params, heads=2)
    with pytest.raises(InputError, match=r"state has shape \[1, 4, 6\], expected \[2, 4, 6\]"):
        frame_gated_delta_step(inp["k"][:, 0], inp["v"][:, 0], **params, heads=2, state=torch.zeros(1, 4, 6))
    with pytest.raises(ValueError, match="heads must be a positive int"):
        frame_gated_delta_step(inp["k"][:, 0], inp["v"][:, 0], **params, heads=0)
