"""Data-loading throughput of the CAMUS and EchoNet-Dynamic loaders at the paper's settings.

Generates small synthetic data sets in a temporary folder (or uses ``--camus DIR`` / ``--echonet DIR``), then times
DataLoader iteration (batch 8, 10 frames ED..ES, 256 px CAMUS / 128 px EchoNet) with 0 and 2 workers, with and
without augmentation (and, for CAMUS, with and without the decoded cache), and prints a Markdown table of clips per
second. Worker start-up and the first batch are
not timed.

    .venv/bin/python bench/data.py                      # synthetic data, default sizes
    .venv/bin/python bench/data.py --echonet /data/EchoNet-Dynamic --camus /data/CAMUS_public
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from gdkvm.data.camus import CamusDataset
from gdkvm.data.datamodule import collate_clips
from gdkvm.data.echonet import EchoNetDataset
from gdkvm.data.transforms import ClipTransform


def clips_per_second(dataset: Dataset, workers: int, batch_size: int, min_clips: int) -> tuple[float, float]:
    """Clips per wall-clock second and per CPU second of this process, over at least ``min_clips`` clips (cycling
    the data), after one untimed batch. The CPU rate only means something with 0 workers (the work then runs here);
    it is what one idle core would give, whatever else loads the machine."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate_clips,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    iterator, done, started, cpu = iter(loader), 0, None, 0.0
    while done < min_clips:
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        if started is None:
            started, cpu = time.perf_counter(), time.process_time()  # the first batch pays for worker start-up
            continue
        done += batch["frames"].shape[0]
    return done / (time.perf_counter() - started), done / max(time.process_time() - cpu, 1e-9)


def make_data(tmp: Path, patients: int, videos: int) -> tuple[Path, Path]:
    """Synthetic CAMUS (2023 layout) and EchoNet folders under ``tmp``."""
    from gdkvm.data.synthetic import synth_camus, synth_echonet

    started = time.perf_counter()
    synth_camus(tmp / "camus", patients=patients, seed=0)
    synth_echonet(tmp / "echonet", videos=videos, seed=0)
    print(f"generated {patients} CAMUS patients and {videos} EchoNet videos in {time.perf_counter() - started:.1f} s")
    return tmp / "camus", tmp / "echonet"


def _datasets(camus: Path, echonet: Path, cache: Path) -> list[tuple[str, int, bool, bool, Dataset]]:
    """(loader, size, augment, cached, dataset) for every benchmark row group."""
    out = []
    for augment in (False, True):
        for cached in (False, True):
            transform = ClipTransform(seed=0) if augment else None
            cache_dir = cache if cached else None
            dataset = CamusDataset(
                camus, split="all", size=256, num_frames=10, transform=transform, cache_dir=cache_dir
            )
            out.append(("camus", 256, augment, cached, dataset))
    for augment in (False, True):
        transform = ClipTransform(seed=0) if augment else None
        dataset = EchoNetDataset(echonet, split="all", size=128, num_frames=10, transform=transform)
        out.append(("echonet", 128, augment, False, dataset))
    return out


def run(camus: Path, echonet: Path, cache: Path, workers: list[int], min_clips: int, batch_size: int) -> list[str]:
    """Benchmark rows as Markdown table lines (CAMUS also with the decoded cache, filled before timing)."""
    rows = ["| loader | size | frames | augment | cache | workers | clips/s | clips/CPU-s |", "|---" * 8 + "|"]
    for name, size, augment, cached, dataset in _datasets(camus, echonet, cache):
        if cached:
            for i in range(len(dataset)):
                dataset[i]  # fill the cache (not timed)
        for n in workers:
            rate, cpu_rate = clips_per_second(dataset, n, batch_size, min_clips)
            flags = f"{'yes' if augment else 'no'} | {'yes' if cached else 'no'}"
            per_cpu = f"{cpu_rate:.1f}" if n == 0 else "-"
            rows.append(f"| {name} | {size} | 10 | {flags} | {n} | {rate:.1f} | {per_cpu} |")
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camus", type=Path, help="existing CAMUS folder (default: synthetic)")
    parser.add_argument("--echonet", type=Path, help="existing EchoNet-Dynamic folder (default: synthetic)")
    parser.add_argument("--patients", type=int, default=20, help="synthetic CAMUS patients")
    parser.add_argument("--videos", type=int, default=40, help="synthetic EchoNet videos")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--clips", type=int, default=160, help="clips timed per row")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # as in DataLoader workers; spinning intra-op threads would also blur the CPU-time column
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load {load:.1f}")
    with tempfile.TemporaryDirectory(prefix="gdkvm-bench-") as tmp:
        camus, echonet = args.camus, args.echonet
        if camus is None or echonet is None:
            synth_camus_dir, synth_echonet_dir = make_data(Path(tmp), args.patients, args.videos)
            camus, echonet = camus or synth_camus_dir, echonet or synth_echonet_dir
        rows = run(camus, echonet, Path(tmp) / "cache", args.workers, args.clips, args.batch_size)
    print("\n".join(["", *rows]))


if __name__ == "__main__":
    main()
