"""Training throughput and memory from Lightning CSV logs: median ``train/clips_per_s`` (first steps and the steps
after validation skipped by using the median), peak ``train/peak_mem_gib``, steps, best ``val/dice``.

    python bench/train_summary.py frame=runs/a/lightning_logs/version_0/metrics.csv token=runs/b/.../metrics.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path


def column(rows: list[dict], key: str) -> list[float]:
    """The non-empty float values of one column."""
    return [float(r[key]) for r in rows if r.get(key) not in (None, "")]


def summarize(path: Path) -> dict:
    """Summary of one metrics.csv."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    speed, peak = column(rows, "train/clips_per_s"), column(rows, "train/peak_mem_gib")
    steps, dice = column(rows, "step"), column(rows, "val/dice")
    return {
        "clips_per_s_median": statistics.median(speed) if speed else None,
        "peak_mem_gib": max(peak) if peak else None,
        "steps": int(max(steps)) + 1 if steps else 0,
        "best_val_dice": max(dice) if dice else None,
        "last_val_dice": dice[-1] if dice else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=PATH/metrics.csv")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    out = {}
    for item in args.runs:
        name, _, path = item.partition("=")
        try:
            out[name] = summarize(Path(path))
        except (OSError, ValueError, KeyError) as err:
            out[name] = {"error": f"{path}: {err}"}
        print(name, json.dumps(out[name]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
