"""Inference speed of GDKVM networks: frames per second and peak memory, streaming (batch 1) and batched.

    python bench/infer.py                       # GPU when present: bf16, eager and CUDA graphs (torch.compile)
    python bench/infer.py --device cpu          # fp32 on the CPU (this machine: 2 cores)

Streaming = ``VideoSegmenter.step`` frame after frame with the state carried (what ``gdkvm segment`` and the demo
do); batched = the same step over B clips at once. Models: ``default`` (the bundled weights, or the default network
with random weights when they are absent: speed does not depend on the values) and ``full`` (the paper's size).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gdkvm.inference import VideoSegmenter  # noqa: E402
from gdkvm.model import GDKVM  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def build(name: str) -> GDKVM:
    """The network of ``configs/model/<name>.yaml`` (``default`` -> default.yaml, ``full`` -> gdkvm.yaml)."""
    cfg = yaml.safe_load((ROOT / "configs" / "model" / {"full": "gdkvm.yaml"}.get(name, f"{name}.yaml")).read_text())
    weights = ROOT / "gdkvm" / "weights" / "default.pt"
    if name == "default" and weights.is_file():
        from gdkvm.checkpoint import load_model

        return load_model(weights)
    return GDKVM(**cfg["init_args"]).eval()


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_stream(seg: VideoSegmenter, batch: int, size: int, frames: int, warmup: int, device: torch.device) -> float:
    """Frames per second (batch x steps / s) of ``frames`` streamed steps after ``warmup`` steps."""
    x = torch.rand(batch, 1, size, size, device=device)
    seg.reset()
    for _ in range(warmup):
        seg.step(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(frames):
        seg.step(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * frames / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = device.type == "cuda"
    if gpu:
        torch.set_float32_matmul_precision("high")
    modes = ["eager", "cuda-graphs"] if gpu and not args.no_compile else ["eager"]
    rows = []
    for name in args.models:
        model = build(name).to(device)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for size in args.sizes:
            for batch in args.batches:
                for mode in modes:
                    if mode == "cuda-graphs" and batch > 1 and not args.compile_batched:
                        continue
                    seg = VideoSegmenter(model, device=device, amp=gpu, compile=mode == "cuda-graphs")
                    if gpu:
                        torch.cuda.reset_peak_memory_stats()
                    frames = args.frames if gpu else max(4, args.frames // (4 * batch))
                    try:
                        fps = time_stream(seg, batch, size, frames, args.warmup if gpu else 2, device)
                    except Exception as err:  # keep the other rows; report the failure in the table
                        print(f"{name} {size}px batch {batch} {mode}: failed ({type(err).__name__}: {err})"[:300])
                        fps = float("nan")
                    # GPU: peak allocated by torch in this row; CPU: the process's peak resident set so far (monotonic)
                    peak = torch.cuda.max_memory_allocated() / 2**20 if gpu else peak_rss_mib()
                    row = {"model": name, "params_M": round(params, 2), "size": size, "batch": batch}
                    row.update(mode=mode, dtype="bf16" if gpu else "fp32", fps=round(fps, 1), peak_MiB=round(peak, 1))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict], device: str) -> str:
    head = "| model | params (M) | px | batch | mode | dtype | frames/s | peak MiB |\n|---|---|---|---|---|---|---|---|"
    lines = [head] + [
        f"| {r['model']} | {r['params_M']} | {r['size']} | {r['batch']} | {r['mode']} | {r['dtype']} | {r['fps']} | "
        f"{r['peak_MiB']} |"
        for r in rows
    ]
    return f"device: {device}, torch {torch.__version__}\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None)
    p.add_argument("--models", nargs="+", default=["default", "full"], choices=["default", "full", "small"])
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 112])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    p.add_argument("--frames", type=int, default=200, help="timed steps (GPU; the CPU runs fewer)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--no-compile", action="store_true", help="skip the CUDA-graph (torch.compile) runs")
    p.add_argument("--compile-batched", action="store_true", help="also compile the batched runs")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_grad_enabled(False)
    rows = run(args)
    dev = (
        torch.cuda.get_device_name()
        if (args.device or "cuda").startswith("cuda") and torch.cuda.is_available()
        else "cpu"
    )
    print(table(rows, dev))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
