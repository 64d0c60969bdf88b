"""Frame-rule Triton kernels under the interpreter with the GPU's dot numerics (CPU).

On CPU the kernels pick exact fp32 dots (``input_precision="ieee"``), so precision choices that only matter on a GPU
go untested. Here the precision selectors return their CUDA values and the interpreter's ``tl.dot`` behaves like
Hopper's tensor cores: TF32 truncates fp32 operands to a 10-bit mantissa, 3xTF32 splits each operand into two TF32
parts (big * big + big * small + small * big), bf16 operands are decoded, fp32 -> bf16 casts round to nearest even.

Regression: the per-head gate projections R_t = (K_t^T V_t) W of the pre-pass ran at the pixel GEMMs' precision, i.e.
plain TF32 for bf16 inputs. Neither K^T V (an fp32 sum) nor W is exact in TF32, so the gates of the parallel
recurrence carried ~1e-3 relative errors; for N >> Dk (expanding I - beta G_t) these grew to a final-state error of
0.17 and gradient errors of ~600x at B2 T10 N1024 Dk64 Dv256 (GPU test ``B2T10N1024-bf16``).
"""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from gdkvm.ops.frame.tiles import kt_y_tile
from tests.ops.gpu_like import patch_gpu_like
from tests.ops.test_frame_gpu import make_inputs, triton_errors  # same inputs, loss and checks as on the GPU


@pytest.fixture
def gpu_like_dots(monkeypatch: pytest.MonkeyPatch) -> None:
    from gdkvm.ops.frame import triton_bwd, triton_fwd, triton_gram, triton_step, tuning

    patch_gpu_like(monkeypatch)
    cuda = torch.device("cuda")
    for module in (triton_fwd, triton_bwd, triton_step, triton_gram, tuning):  # tuning: its pixel_precision
        for name in ("dot_precision", "serial_precision", "serial_fast_precision"):
            fn = getattr(module, name, None)
            if fn is not None:
                monkeypatch.setattr(module, name, lambda *args, _fn=fn: _fn(*args[:-1], cuda))


CASES = [  # (B, T, N, Dk, Dv, H), dtype, initial state, tolerance, final-state tolerance
    # bf16: o, dk, dv are rounded to bf16 (1e-2, as on the GPU); the state is fp32 built from exact bf16 products and
    # 3xTF32 state dots, so it must stay near fp32 accuracy (measured 4e-7 and 5e-6; TF32 gate projections: 8e-4, 4e-3)
    pytest.param((1, 6, 128, 16, 64, 4), torch.bfloat16, False, 1e-2, 1e-4, id="B1T6N128Dk16Dv64H4-bf16"),
    pytest.param((1, 5, 512, 32, 128, 4), torch.bfloat16, False, 1e-2, 1e-4, id="B1T5N512Dk32Dv128H4-bf16-expanding"),
    pytest.param((2, 3, 64, 64, 256, 8), torch.bfloat16, True, 1e-2, 1e-4, id="B2T3N64Dk64Dv256H8-bf16-h0"),
    pytest.param((1, 1, 196, 128, 512, 8), torch.float32, False, 1e-3, 1e-3, id="B1T1N196Dk128Dv512-fp32"),
]


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")  # numpy sigmoid of large logits (exactly 0)
@pytest.mark.parametrize(("shape", "dtype", "with_state", "tol", "state_tol"), CASES)
def test_gpu_like_numerics_match_reference(
    gpu_like_dots, shape: tuple, dtype: torch.dtype, with_state: bool, tol: float, state_tol: float
) -> None:
    errors = triton_errors(make_inputs(shape, dtype, with_state, device="cpu"), tol)
    assert errors["final_state"] <= state_tol, f"final state: {errors['final_state']:.2e}"


@pytest.mark.parametrize("hand", [0, 1], ids=["tf32x3", "hand-made"])
def test_gpu_like_fp32_gram_precisions(gpu_like_dots, hand: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """fp32 inputs at the paper's sizes with the Gram pre-pass and the readout in the compiler's 3xTF32 and in the
    hand-made one (``gram_hand3``, ``readout_hand3``), both at fp32-like accuracy under TF32 truncation (the lean
    walk's hand-made 3xTF32 included)."""
    from gdkvm.ops.frame.tuning import TUNING

    monkeypatch.setitem(TUNING, "gram_hand3", hand)
    monkeypatch.setitem(TUNING, "readout_hand3", hand)
    errors = triton_errors(make_inputs((2, 3, 64, 64, 256, 8), torch.float32, True, device="cpu"), 1e-3)
    assert max(errors.values()) <= 1e-5, errors  # measured 2e-7 to 9e-7 both ways; plain TF32 would be ~1e-4


@triton.jit
def _kt_y_kernel(x_ptr, y_ptr, out_ptr, N, DK, DY, BK: tl.constexpr, BY: tl.constexpr, PREC: tl.constexpr):
    """out [BK, BY] = X^T Y, X [N, DK], Y [N, DY] (one program)."""
    acc = kt_y_tile(x_ptr, y_ptr, N, DK, DY, 0, BK, 64, BY, PREC)
    tl.store(out_ptr + tl.arange(0, BK)[:, None] * BY + tl.arange(0, BY)[None, :], acc)


def test_hand_made_3xtf32_is_as_accurate_as_the_compilers(monkeypatch: pytest.MonkeyPatch) -> None:
    """K^T K and K^T V over 1024 positive (softmax) keys with the GPU's dot numerics, against float64: the hand-made
    3xTF32 (``tiles.dot_acc``) rounds its splits to nearest and sums its three products apart from the running sum, as
    the compiler's does, so it is as accurate. Regression: it truncated them, biasing every product towards zero (K^T V
    error 3.2e-7 against the compiler's 1.0e-7 here), and added them one by one to the running sum (1.3e-7); on an H100
    the ill-conditioned N1024 gradients (``test_ill_conditioned_n1024_fp32_against_float64``) came out 10x worse."""
    patch_gpu_like(monkeypatch)
    gen = torch.Generator().manual_seed(0)
    k = torch.softmax(2 * torch.randn(1024, 32, generator=gen), -1)
    v = torch.randn(1024, 32, generator=gen)
    for y, ref in ((k, k.double().T @ k.double()), (v, k.double().T @ v.double())):
        errors = {}
        for prec in ("hand3", "tf32x3"):
            out = torch.empty(32, 32)
            _kt_y_kernel[(1,)](k, y, out, 1024, 32, 32, BK=32, BY=32, PREC=prec)
            errors[prec] = float((out.double() - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt())
        assert errors["tf32x3"] <= 2.5e-7, errors  # fp32-like: the tiles' fp32 sums dominate
        assert errors["hand3"] <= 1.1 * errors["tf32x3"], errors  # measured equal; truncated splits: 3.3x
