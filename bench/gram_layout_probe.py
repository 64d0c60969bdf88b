"""Probe: why the Gram pre-pass's K_t^T V_t runs at a fraction of the tensor cores' rate, on CUDA.

The product reduces over pixels, the outer dimension of both row-major [N, D] inputs, so both operands reach the
tensor cores MN-major; TF32 wgmma takes only K-major shared-memory operands (16-bit types take either), so Triton
moves fp32 operands through registers. This times one kernel shape (per frame U = K^T V, [Dk, Dv], BN pixels per
step) in five forms, CUDA-graph replays of one launch, with the error against float64:

- ``hand3``: the Gram pre-pass's form (hand-made 3xTF32 on the row-major inputs);
- ``hand3-kmajor``: the same on K^T [Dk, N] and V^T [Dv, N] given pre-transposed (K-major operands), plus the
  time of making those transposes;
- ``bf16x6``: operands split into three bfloat16 pieces (x = b1 + b2 + b3 exactly for normal fp32 values) and the
  six products with i + j <= 4 summed in fp32 (bf16 operands may be MN-major; same MMA work as 3xTF32);
- ``tf32``: one TF32 product (the MMA-rate reference; TF32 accuracy only);
- cuBLAS ``torch.bmm`` in fp32 (SGEMM) for scale.

Then the Gram pre-pass itself (``triton_gram.gram``) in parts: K^T V alone, with K^T K, with the gate projections,
and all three (the forward's call).

Run from the repository root: ``python3 bench/gram_layout_probe.py`` (no arguments).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import triton
import triton.language as tl
import triton.testing

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ops_frame  # noqa: E402

from gdkvm.ops.frame.tiles import split_tf32  # noqa: E402
from gdkvm.ops.frame.triton_fwd import _fwd_plan  # noqa: E402
from gdkvm.ops.frame.triton_gram import gram  # noqa: E402


@triton.jit
def _bf16_split(x):
    b1 = x.to(tl.bfloat16)
    r1 = x - b1.to(tl.float32)
    b2 = r1.to(tl.bfloat16)
    b3 = (r1 - b2.to(tl.float32)).to(tl.bfloat16)
    return b1, b2, b3


@triton.jit
def probe_kernel(k_ptr, v_ptr, u_ptr, N, DK: tl.constexpr, DV: tl.constexpr, BN: tl.constexpr, BY: tl.constexpr,
                 MODE: tl.constexpr, KMAJOR: tl.constexpr):  # fmt: skip
    """u[bt, :, c0:c0+BY] = K^T V over N pixels. Grid (BT, DV / BY). KMAJOR: k is K^T [BT, DK, N], v is V^T
    [BT, DV, N]; else k [BT, N, DK], v [BT, N, DV]."""
    bt = tl.program_id(0).to(tl.int64)
    c0 = tl.program_id(1) * BY
    rk = tl.arange(0, DK)
    ry = c0 + tl.arange(0, BY)
    acc = tl.zeros((DK, BY), dtype=tl.float32)
    for n0 in range(0, N, BN):
        rn = n0 + tl.arange(0, BN)
        if KMAJOR:
            a = tl.load(k_ptr + bt * DK * N + rk[:, None] * N + rn[None, :])
            b = tl.trans(tl.load(v_ptr + bt * DV * N + ry[:, None] * N + rn[None, :]))
        else:
            a = tl.load(k_ptr + bt * N * DK + rn[None, :] * DK + rk[:, None])
            b = tl.load(v_ptr + bt * N * DV + rn[:, None] * DV + ry[None, :])
        if MODE == 0:  # hand-made 3xTF32
            a_hi, a_lo = split_tf32(a)
            b_hi, b_lo = split_tf32(b)
            part = tl.dot(a_lo, b_hi, input_precision="tf32")
            part = tl.dot(a_hi, b_lo, part, input_precision="tf32")
            acc += tl.dot(a_hi, b_hi, part, input_precision="tf32")
        elif MODE == 1:  # bf16 x 6
            a1, a2, a3 = _bf16_split(a)
            b1, b2, b3 = _bf16_split(b)
            part = tl.dot(a1, b3)
            part = tl.dot(a2, b2, part)
            part = tl.dot(a3, b1, part)
            part = tl.dot(a1, b2, part)
            part = tl.dot(a2, b1, part)
            acc += tl.dot(a1, b1, part)
        else:  # one TF32 product
            acc += tl.dot(a, b, input_precision="tf32")
    tl.store(u_ptr + bt * DK * DV + rk[:, None] * DV + ry[None, :], acc)


def graph_ms(fn) -> float:
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return float(triton.testing.do_bench(graph.replay, warmup=25, rep=200, return_mode="median"))


def probe_shape(bt: int, n: int, gen: torch.Generator, dk: int = 64, dv: int = 256) -> None:
    """Print the table rows of ``bt`` frames of ``n`` pixels."""
    k = torch.softmax(torch.randn(bt, n, dk, device="cuda", generator=gen), -1)
    v = torch.randn(bt, n, dv, device="cuda", generator=gen)
    ref = torch.bmm(k.double().transpose(1, 2), v.double())
    kt, vt = k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()
    u = torch.empty(bt, dk, dv, device="cuda")

    def err() -> float:
        return float((u.double() - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt())

    forms = ((0, False, "hand3"), (0, True, "hand3-kmajor"), (1, False, "bf16x6"), (1, True, "bf16x6-kmajor"),
             (2, False, "tf32"))  # fmt: skip
    for mode, kmajor, name in forms:
        a, b = (kt, vt) if kmajor else (k, v)
        for by, warps, stages in ((64, 4, 2), (32, 4, 2), (64, 4, 3), (128, 8, 2)):
            cfg = {"DK": dk, "DV": dv, "BN": 64, "BY": by, "MODE": mode, "KMAJOR": kmajor, "num_warps": warps,
                   "num_stages": stages}  # fmt: skip
            row = f"| {bt} x {n} | {name} | {by} | {warps} | {stages} |"
            try:
                us = graph_ms(lambda a=a, b=b, cfg=cfg: probe_kernel[(bt, dv // cfg["BY"])](a, b, u, n, **cfg)) * 1e3
                print(f"{row} {us:.1f} | {err():.1e} |", flush=True)
            except Exception as exc:  # noqa: BLE001  (a form that does not compile is a finding)
                print(f"{row} failed: {exc!r:.150} | |", flush=True)
    us = graph_ms(lambda: (k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous())) * 1e3
    print(f"| {bt} x {n} | making K^T, V^T (two copies) | | | | {us:.1f} | |")
    us = graph_ms(lambda: torch.bmm(k.transpose(1, 2), v, out=u)) * 1e3
    print(f"| {bt} x {n} | cuBLAS fp32 bmm | | | | {us:.1f} | {err():.1e} |", flush=True)


def prepass_parts(name: str) -> None:
    """Print the Gram pre-pass's time in parts at issue shape ``name``."""
    b, t, n = ops_frame.SHAPES[name]
    k, v, w_beta, w_alpha, _, _ = ops_frame.make_inputs(b, t, n, torch.float32)
    dk, dv, heads = k.shape[-1], v.shape[-1], ops_frame.HEADS
    _, bh, split, *_ = _fwd_plan(b, t, n, dk, dv, heads, k.dtype, k.device, True, False)
    gates = (w_beta, w_alpha, heads, bh)
    parts = (("K^T V (64-column programs)", False, None, 0), ("K^T V + K^T K", True, None, split),
             ("K^T V by head + gate projections", False, gates, 0),
             ("all (the forward's call)", True, gates, split))  # fmt: skip
    for label, with_kk, g, sp in parts:
        us = graph_ms(lambda with_kk=with_kk, g=g, sp=sp: gram(k, v, with_kk=with_kk, gates=g, split=sp)) * 1e3
        print(f"| {name} | pre-pass: {label} | | | | {us:.1f} | |", flush=True)


def main() -> None:
    print(f"card: {torch.cuda.get_device_name()}; torch {torch.__version__}; triton {triton.__version__}")
    print("| frames x N | form | BY | warps | stages | us | rel. err vs fp64 |")
    print("|---|---|---|---|---|---|---|")
    gen = torch.Generator(device="cuda").manual_seed(0)
    for name in ("B10T10N256", "B32T10N256"):
        prepass_parts(name)
    for bt, n in ((100, 256), (320, 256), (100, 64)):
        probe_shape(bt, n, gen)


if __name__ == "__main__":
    main()
