"""Make the Triton interpreter compute ``tl.dot`` and bf16 casts the way Hopper's tensor cores do (CPU tests).

The interpreter multiplies fp32 operands exactly, keeps bf16 values as raw uint16 bits (and would multiply those),
and truncates fp32 -> bf16. On the GPU: TF32 dots read fp32 operands with a 10-bit mantissa (truncated), 3xTF32 splits
each operand into two TF32 parts (big * big + big * small + small * big), bf16 operands are real bf16 numbers, and
fp32 -> bf16 rounds to nearest even. ``patch_gpu_like(monkeypatch)`` installs all of that for one test.
"""

from __future__ import annotations

import numpy as np
import pytest


def tf32_truncate(x: np.ndarray) -> np.ndarray:
    """What a TF32 tensor-core dot reads of an fp32 operand."""
    return (x.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)


def tf32_round(x: np.ndarray) -> np.ndarray:
    """cvt.rna.tf32.f32, used by Triton's 3xTF32 split."""
    bits = x.view(np.uint32).astype(np.uint64)
    return ((bits + 0x1000) & 0xFFFFE000).astype(np.uint32).view(np.float32)


def patch_gpu_like(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the interpreter's dot and fp32 -> bf16 cast by GPU-like ones for the duration of a test."""
    import triton.language as tl
    from triton.runtime import interpreter

    def as_f32(handle) -> np.ndarray:
        if handle.dtype.scalar == tl.bfloat16:  # raw uint16 bits -> the bf16 values
            return (handle.data.astype(np.uint32) << 16).view(np.float32)
        return handle.data.astype(np.float32)

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):  # noqa: ARG001
        x, y = as_f32(a), as_f32(b)
        prec = str(input_precision).upper()
        if a.dtype.scalar == tl.float32 and "TF32X3" in prec:
            xb, yb = tf32_round(x), tf32_round(y)
            xs, ys = tf32_round(x - xb), tf32_round(y - yb)
            out = np.matmul(xb, ys) + np.matmul(xs, yb) + np.matmul(xb, yb)
        else:
            if a.dtype.scalar == tl.float32 and "IEEE" not in prec:
                x, y = tf32_truncate(x), tf32_truncate(y)
            out = np.matmul(x, y, dtype=np.float32)
        return interpreter.TensorHandle(out.astype(np.float32) + d.data, d.dtype.scalar)

    original_cast = interpreter.InterpreterBuilder.cast_impl

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            bits = src.data.astype(np.float32).view(np.uint32).astype(np.uint64)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
            return interpreter.TensorHandle(bits.astype(np.uint16), dst_type.scalar)
        return original_cast(self, src, dst_type)

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_dot", create_dot)
    monkeypatch.setattr(interpreter.InterpreterBuilder, "cast_impl", cast_impl)
