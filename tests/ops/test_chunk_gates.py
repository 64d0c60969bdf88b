"""Host-side chunk-local cumulative sums of the log-decay (gdkvm.ops.gated_delta.gates)."""

from __future__ import annotations

import pytest
import torch

from gdkvm.ops.gated_delta.gates import chunk_local_cumsum, reverse_chunk_local_cumsum


@pytest.mark.parametrize("shape", [(2, 150, 3), (1, 64, 2, 5), (2, 7, 1)])
@pytest.mark.parametrize("chunk", [16, 64])
def test_chunk_local_cumsum_restarts_every_chunk(shape, chunk) -> None:
    g = torch.randn(shape)
    got = chunk_local_cumsum(g, chunk)
    assert got.shape == g.shape and got.dtype == torch.float32 and got.is_contiguous()
    for start in range(0, shape[1], chunk):
        part = g[:, start : start + chunk]
        torch.testing.assert_close(got[:, start : start + chunk], part.cumsum(1))


@pytest.mark.parametrize("shape", [(2, 150, 3), (1, 100, 2, 5)])
def test_reverse_cumsum_is_the_adjoint(shape) -> None:
    # dg of the kernels: the gradient of chunk_local_cumsum, i.e. sum of dG over later tokens of the same chunk.
    g = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    d_big_g = torch.randn(shape, dtype=torch.float64)
    (chunk_local_cumsum(g, 32).double() * d_big_g).sum().backward()
    got = reverse_chunk_local_cumsum(d_big_g.float(), 32)
    torch.testing.assert_close(got, g.grad.float(), rtol=1e-5, atol=1e-5)
