"""Jit helpers of the token-rule kernels on their own: the bf16 head-and-tail product ``_dot_hilo`` against float64,
next to the single bf16 and TF32 products it replaces (GPU-like products in the interpreter)."""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from gdkvm.ops.gated_delta.chunk_jit import _dot_hilo
from tests.ops.gpu_like import patch_gpu_like


@triton.jit
def _product_kernel(a_ptr, b_ptr, out_ptr, M: tl.constexpr, N: tl.constexpr, P: tl.constexpr, MODE: tl.constexpr):
    """out = a [M, N] (bf16) times b [N, P] (fp32): MODE 0 by ``_dot_hilo``, 1 with b cast to bf16, 2 in TF32;
    with the transposed a (a_ptr holding [N, M]) for MODE 3 (``_dot_hilo`` of tl.trans)."""
    rm, rn, rp = tl.arange(0, M), tl.arange(0, N), tl.arange(0, P)
    b = tl.load(b_ptr + rn[:, None] * P + rp[None, :])
    if MODE == 3:
        a = tl.trans(tl.load(a_ptr + rn[:, None] * M + rm[None, :]))
    else:
        a = tl.load(a_ptr + rm[:, None] * N + rn[None, :])
    if MODE == 0 or MODE == 3:
        out = _dot_hilo(a, b)
    elif MODE == 1:
        out = tl.dot(a, b.to(tl.bfloat16))
    else:
        out = tl.dot(a.to(tl.float32), b, input_precision="tf32")
    tl.store(out_ptr + rm[:, None] * P + rp[None, :], out)


def _relative_error(mode: int, transposed: bool = False) -> float:
    a = torch.randn(64, 64).bfloat16()
    b = torch.randn(64, 16) * torch.logspace(-2, 2, 16)  # columns over four decades, as a state's can be
    out = torch.empty(64, 16)
    src = a.t().contiguous() if transposed else a
    _product_kernel[(1,)](src, b, out, M=64, N=64, P=16, MODE=mode)
    ref = a.double() @ b.double()
    return float((out.double() - ref).norm() / ref.norm())


def test_dot_hilo_keeps_more_than_tf32(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_gpu_like(monkeypatch)
    hilo, single, tf32 = (_relative_error(mode) for mode in (0, 1, 2))
    assert hilo < 2e-5, hilo  # bf16 head + tail: about 16 bits of b
    assert single > 1e-3, single  # one bf16 product: 8 bits
    assert tf32 > 1e-4, tf32  # TF32 truncation: 10 bits
    assert _relative_error(3, transposed=True) < 2e-5
