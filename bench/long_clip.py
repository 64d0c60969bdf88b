"""Long-clip stability: stream synthetic clips of many frames (several beats) through trained GDKVMs and report the
LV Dice against the generator's exact masks early and late in the clip, plus the memory state's size over time.

    python bench/long_clip.py --ckpt frame=runs/a/best.ckpt token=runs/b/best.ckpt --frames 200 --clips 8

A memory rule that is not contractive shows as a state norm that grows with the frame index and a late-clip Dice
below the early-clip Dice; a stable one keeps both flat. Prints a table; ``--json`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gdkvm.checkpoint import load_model  # noqa: E402
from gdkvm.data.synthetic.clip import make_clip  # noqa: E402
from gdkvm.inference import VideoSegmenter  # noqa: E402


def clip_batch(n: int, frames: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` synthetic 4CH/2CH clips: frames [n, T, 1, size, size] float in [0, 1], LV masks [n, T, size, size]."""
    xs, ys = [], []
    for i in range(n):
        x, m, _ = make_clip((seed, i), view="4CH" if i % 2 == 0 else "2CH", size=(size, size), frames=frames)
        xs.append(torch.from_numpy(x).float().div(255.0)[:, None])
        ys.append(torch.from_numpy(m == 1))
    return torch.stack(xs), torch.stack(ys)


def dice(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-image Dice of boolean [..., H, W] masks -> [...] (1.0 where both are empty)."""
    inter = (pred & truth).flatten(-2).sum(-1).float()
    total = pred.flatten(-2).sum(-1).float() + truth.flatten(-2).sum(-1).float()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


def state_norm(state: dict) -> float:
    """Largest absolute entry of the memory matrix S [B, Dk, Dv] of a streaming state (inf/nan propagate). The
    running object summaries are sums by design (they are divided by the running area) and are not checked."""
    return state["memory"].detach().float().abs().max().item()


def run_model(name: str, ckpt: str, clips: torch.Tensor, masks: torch.Tensor, window: int, device: str) -> dict:
    """Stream every clip (all at once, batch = number of clips) and summarise Dice and state size over time."""
    model = load_model(ckpt, device=device)
    seg = VideoSegmenter(model, device=device, amp=device == "cuda")
    per_frame, norms = [], []
    seg.reset()
    for t in range(clips.shape[1]):
        prob = seg.step(clips[:, t].to(device))
        pred = (prob.argmax(1) == 1).cpu()
        per_frame.append(dice(pred, masks[:, t]))
        norms.append(state_norm(seg.state))
    d = torch.stack(per_frame, 1)  # [n, T]
    early, late = d[:, :window].mean().item(), d[:, -window:].mean().item()
    return {
        "model": name,
        "frames": clips.shape[1],
        "dice_all": d.mean().item(),
        f"dice_first{window}": early,
        f"dice_last{window}": late,
        "late_minus_early": late - early,
        "memory_max_first": norms[0],
        "memory_max_mid": norms[len(norms) // 2],
        "memory_max_last": norms[-1],
        "finite": all(math.isfinite(v) for v in norms),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", nargs="+", required=True, help="NAME=PATH pairs (checkpoint or weights file)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--window", type=int, default=20, help="frames averaged at the start and the end")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    clips, masks = clip_batch(args.clips, args.frames, args.size, args.seed)
    rows = []
    for item in args.ckpt:
        name, _, path = item.partition("=")
        try:
            rows.append(run_model(name, path or name, clips, masks, args.window, args.device))
        except Exception as err:  # keep the other rows
            rows.append({"model": name, "error": f"{type(err).__name__}: {err}"})
        print(json.dumps(rows[-1]), flush=True)
    keys = [k for k in rows[0] if k != "error"] if "error" not in rows[0] else list(rows[0])
    print("  ".join(f"{k:>16}" for k in keys))
    for row in rows:
        print(
            "  ".join(
                f"{row.get(k, ''):>16.4f}" if isinstance(row.get(k), float) else f"{row.get(k, '')!s:>16}" for k in keys
            )
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all("error" not in r and r["finite"] for r in rows) else 1


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    raise SystemExit(main())
