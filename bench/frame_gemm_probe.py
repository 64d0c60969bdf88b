"""How fast cuBLAS does the frame rule's parallel GEMMs, beside our Triton launches (a probe, GPU only).

The frame forward has two parallel parts around its serial walk: the Gram pre-pass (U_t = K_t^T V_t, G_t = K_t^T K_t
and the per-head gate projections of U_t) and the readout (O_t = K_t S_t). Ours run them as Triton kernels in
hand-made 3xTF32 (fp32 inputs). This times, per shape of the issue table and kernel-only (CUDA graph replay, warm
L2), cuBLAS batched GEMMs for the same products in full fp32 (SGEMM, the eager loop's arithmetic) and in TF32, next
to our two launches. Run from the repository root: ``python3 bench/frame_gemm_probe.py [--shapes ...]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import triton.testing

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ops_frame  # noqa: E402

from gdkvm.ops.frame.triton_fwd import _fwd_plan, readout_kernel  # noqa: E402
from gdkvm.ops.frame.triton_gram import gram  # noqa: E402
from gdkvm.ops.frame.tuning import launch  # noqa: E402


def graph_us(fn) -> float:
    return triton.testing.do_bench_cudagraph(fn, rep=50) * 1e3


def probe(name: str) -> dict:
    b, t, n = ops_frame.SHAPES[name]
    k, v, w_beta, w_alpha, _, _ = ops_frame.make_inputs(b, t, n, torch.float32)
    k, v = k.contiguous(), v.contiguous()
    dk, dv, heads = k.shape[-1], v.shape[-1], ops_frame.HEADS
    _, bh, split, _, _, read_grid, read_const, _ = _fwd_plan(b, t, n, dk, dv, heads, k.dtype, k.device, True, False)
    kf, vf = k.view(b * t, n, dk), v.view(b * t, n, dv)
    states = torch.randn(b, t + 1, dk, dv, device=k.device) / dk
    o = torch.empty_like(v)
    s_flat = states[:, 1:].reshape(b * t, dk, dv)
    blocks = torch.randn(dv, 2 * bh * bh, device=k.device)  # stands in for the per-head weight blocks

    def ours_gram():
        gram(k, v, with_kk=True, gates=(w_beta, w_alpha, heads, bh), split=split)

    def ours_readout():
        meta = read_const["meta"]
        launch(readout_kernel, read_grid, k, states, o, t, n, dk, dv, t + 1, read_const["VCOLS"], o, 1, 1, **meta)

    def blas_gram():
        u = torch.bmm(kf.transpose(1, 2), vf)
        torch.bmm(kf.transpose(1, 2), kf)
        torch.matmul(u, blocks)

    def blas_readout():
        torch.bmm(kf, s_flat)

    row = {"shape": name}
    row["ours_gram_us"], row["ours_readout_us"] = graph_us(ours_gram), graph_us(ours_readout)
    for label, tf32 in (("sgemm", False), ("tf32", True)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        row[f"{label}_gram_us"], row[f"{label}_readout_us"] = graph_us(blas_gram), graph_us(blas_readout)
    torch.backends.cuda.matmul.allow_tf32 = False
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(ops_frame.SHAPES), choices=list(ops_frame.SHAPES))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/frame_gemm_probe.py needs a CUDA device")
    cols = ["ours_gram_us", "sgemm_gram_us", "tf32_gram_us", "ours_readout_us", "sgemm_readout_us", "tf32_readout_us"]
    print(f"device {torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__}")
    print("| shape | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name in args.shapes:
        row = probe(name)
        print(f"| {name} | " + " | ".join(f"{row[c]:.1f}" for c in cols) + " |", flush=True)


if __name__ == "__main__":
    main()
