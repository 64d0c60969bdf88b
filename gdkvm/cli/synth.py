"""`gdkvm synth camus|echonet`: write a synthetic data set in the on-disk format of CAMUS or EchoNet-Dynamic."""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from gdkvm.errors import InputError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gdkvm synth",
        description="Write synthetic echo data with known masks and true EF, in the exact on-disk layout of CAMUS "
        "(2023 NIfTI or 2019 MetaImage) or EchoNet-Dynamic; truth.csv at the root holds the true volumes.",
    )
    sub = parser.add_subparsers(dest="format", required=True, metavar="{camus,echonet}")
    camus = sub.add_parser("camus", help="CAMUS layout (database_nifti/ + database_split/, or training/ for 2019)")
    echonet = sub.add_parser("echonet", help="EchoNet-Dynamic layout (Videos/*.avi, FileList.csv, VolumeTracings.csv)")
    for p in (camus, echonet):
        p.add_argument("--out", type=Path, required=True, help="output folder (created; must be empty)")
        p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
        p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder (nothing is deleted)")
        p.add_argument("--workers", type=int, default=1, help="processes writing cases in parallel (default 1; "
                       "the files are the same for any number)")  # fmt: skip
    camus.add_argument("--patients", type=int, default=4, help="number of patients (default 4)")
    camus.add_argument("--release", choices=("2019", "2023"), default="2023", help="layout (default 2023)")
    camus.add_argument("--height", type=int, nargs=2, default=(352, 616), metavar=("MIN", "MAX"),
                       help="image heights in pixels (default 352 616; e.g. 64 96 for quick tests)")  # fmt: skip
    camus.add_argument("--frames", type=int, nargs=2, default=(10, 30), metavar=("MIN", "MAX"),
                       help="range of frames per half sequence (default 10 30)")  # fmt: skip
    echonet.add_argument("--videos", type=int, default=4, help="number of videos (default 4)")
    echonet.add_argument("--frames", type=int, nargs=2, default=(100, 200), metavar=("MIN", "MAX"),
                         help="range of frames per video (default 100 200)")  # fmt: skip
    echonet.add_argument("--untraced", type=int, default=0, help="videos listed without tracings (default 0)")
    echonet.add_argument("--malformed", type=int, default=0, help="videos with a 20-row traced frame (default 0)")
    return parser


def _summary(root: Path, key: str) -> str:
    with (root / "truth.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    efs = {r[key]: float(r["ef" if "ef" in r else "EF"]) for r in rows}.values()
    return f"true EF {min(efs):.1f}-{max(efs):.1f} % (mean {sum(efs) / len(efs):.1f})"


def main(argv: list[str]) -> int:
    """Run ``gdkvm synth``; returns the exit status (bad options exit 2 through argparse)."""
    parser = _parser()
    args = parser.parse_args(argv)
    from gdkvm.data.synthetic import synth_camus, synth_echonet

    start = time.perf_counter()
    try:
        if args.format == "camus":
            root = synth_camus(args.out, args.patients, args.seed, args.release, args.overwrite,
                               height=tuple(args.height), frames=tuple(args.frames), workers=args.workers)  # fmt: skip
            with (root / "truth.csv").open() as fh:
                reversed_ = sum(r["stored_order"] == "ES->ED" for r in csv.DictReader(fh))
            what = f"{args.patients} CAMUS {args.release} patients x 2 views ({reversed_} stored ES->ED)"
            summary = _summary(root, "patient")
        else:
            root = synth_echonet(args.out, args.videos, args.seed, args.overwrite, frames=tuple(args.frames),
                                 untraced=args.untraced, malformed=args.malformed, workers=args.workers)  # fmt: skip
            what = f"{args.videos} EchoNet videos ({args.untraced} untraced, {args.malformed} malformed)"
            summary = _summary(root, "FileName")
    except InputError:
        raise  # the dispatcher prints it as one line (exit 2)
    except ValueError as err:  # bad option values: argparse-style usage error (exit 2)
        parser.error(str(err))
    print(f"wrote {what} to {root} in {time.perf_counter() - start:.1f} s; {summary}; truth in {root / 'truth.csv'}")
    return 0
