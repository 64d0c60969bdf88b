"""The split prep (``GDKVM_TOKEN_PREP=split``: ``chunk_gram``'s blockwise T, then the prep with T loaded) against the
fused prep and the recurrent reference, under the Triton interpreter with GPU-like dots (tests/ops/gpu_like.py)."""

from __future__ import annotations

import pytest
import torch

from gdkvm.ops.gated_delta import naive_recurrent_gated_delta
from gdkvm.ops.gated_delta.chunk import chunk_gated_delta_triton
from gdkvm.ops.gated_delta.chunk_fwd import launch_prep
from gdkvm.ops.gated_delta.gates import chunk_local_cumsum
from gdkvm.ops.gated_delta.launch import prep_mode
from tests.ops.gpu_like import patch_gpu_like
from tests.ops.test_chunk_naive import make_inputs, rel_rms
from tests.ops.test_chunk_triton import GRAD_TOL, OUT_TOL, _run


def _unit_lower_inverse(x: dict[str, torch.Tensor], chunk: int = 64) -> torch.Tensor:
    """(I + L)^-1 per chunk in float64, [B, T, H, chunk] (rows past the clip's end absent), the oracle of T."""
    k, beta = x["k"].double(), x["beta"].double()
    gc = chunk_local_cumsum(x["g"].float(), chunk).double()
    batch, length, heads, _ = k.shape
    out = torch.zeros(batch, length, heads, chunk, dtype=torch.float64)
    for c0 in range(0, length, chunk):
        n = min(chunk, length - c0)
        kc, bc, gch = k[:, c0 : c0 + n], beta[:, c0 : c0 + n], gc[:, c0 : c0 + n]
        gram = torch.einsum("bihk,bjhk->bhij", kc, kc) * torch.exp(
            gch.transpose(1, 2)[..., :, None] - gch.transpose(1, 2)[..., None, :]
        ).tril(-1)
        lower = (bc.transpose(1, 2)[..., :, None] * gram).tril(-1)
        inv = torch.linalg.inv(torch.eye(n, dtype=torch.float64) + lower)  # [B, H, n, n]
        out[:, c0 : c0 + n, :, :n] = inv.permute(0, 2, 1, 3)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("length", "key_dim", "value_dim"), [(150, 48, 24), (64, 32, 16), (40, 20, 36)])
def test_split_prep_matches_fused_and_inverse(monkeypatch: pytest.MonkeyPatch, dtype, length, key_dim, value_dim):
    # T not a multiple of 64 (a short last chunk, whose missing rows hold G_C), K not a power of two (padded key tile).
    patch_gpu_like(monkeypatch)
    x = make_inputs(2, length, 2, key_dim, value_dim, per_channel=False, dtype=dtype)
    gc = chunk_local_cumsum(x["g"].float(), 64)
    outs = {}
    for mode in ("fused", "split"):
        monkeypatch.setenv("GDKVM_TOKEN_PREP", mode)
        outs[mode] = launch_prep(x["q"], x["k"], x["v"], gc, x["beta"], 0.2)
    ref = _unit_lower_inverse(x)
    # The Gram product reads k at the GPU's precision (TF32 for fp32 inputs) in both preps; the split one must be
    # about as close to the float64 inverse as the fused one.
    err_split, err_fused = rel_rms(ref, outs["split"]["t_inv"]), rel_rms(ref, outs["fused"]["t_inv"])
    assert err_split < 2 * err_fused + 1e-6
    tol = 1e-6 if dtype == torch.float32 else 1e-4  # A is the same launch; w and u differ only through T
    for name in ("a", "w", "u"):
        assert rel_rms(outs["fused"][name].float(), outs["split"][name].float()) < tol, name


@pytest.mark.parametrize("precision", ["high", "fast"])
def test_split_prep_end_to_end(monkeypatch: pytest.MonkeyPatch, precision: str) -> None:
    patch_gpu_like(monkeypatch)
    monkeypatch.setenv("GDKVM_TOKEN_PRECISION", precision)
    monkeypatch.setenv("GDKVM_TOKEN_PREP", "split")
    x = make_inputs(1, 100, 2, 32, 24, per_channel=False, dtype=torch.bfloat16)
    h0, do, dht = torch.randn(1, 2, 32, 24), torch.randn(1, 100, 2, 24), torch.randn(1, 2, 32, 24)
    o_ref, s_ref, g_ref = _run(naive_recurrent_gated_delta, {n: t.float() for n, t in x.items()}, h0, do, dht)
    o, s, grads = _run(chunk_gated_delta_triton, x, h0, do, dht, scale=32**-0.5)
    factor = 2 if precision == "fast" else 1
    assert rel_rms(o_ref, o) < factor * OUT_TOL and rel_rms(s_ref, s) < factor * OUT_TOL
    for name, ref in g_ref.items():
        assert rel_rms(ref, grads[name]) < factor * GRAD_TOL, name


def test_split_prep_falls_back_and_checks_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # A per-channel gate or a chunk other than 64 keeps the fused prep (the same results); a bad value is refused.
    x = make_inputs(1, 40, 1, 16, 8, per_channel=True)
    gc = chunk_local_cumsum(x["g"], 64)
    monkeypatch.setenv("GDKVM_TOKEN_PREP", "split")
    split = launch_prep(x["q"], x["k"], x["v"], gc, x["beta"], 0.25)
    monkeypatch.setenv("GDKVM_TOKEN_PREP", "fused")
    fused = launch_prep(x["q"], x["k"], x["v"], gc, x["beta"], 0.25)
    assert torch.equal(split["t_inv"], fused["t_inv"]) and torch.equal(split["w"], fused["w"])
    monkeypatch.setenv("GDKVM_TOKEN_PREP", "blocks")
    with pytest.raises(ValueError, match="GDKVM_TOKEN_PREP"):
        prep_mode()
