"""`gdkvm segment INPUT... --out DIR`: masks (.nii.gz with spacing), an overlay video browsers play, and areas.csv."""

from __future__ import annotations

import argparse

from tqdm.auto import tqdm

from gdkvm.cli.common import add_model_args, build_segmenter
from gdkvm.segment import model_input_size, segment_clip, write_segmentation


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gdkvm segment", description=__doc__)
    p.add_argument("inputs", nargs="+", help="clips: .avi, .mp4, .nii.gz, .mhd or DICOM")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist already")
    add_model_args(p)
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    segmenter, model = build_segmenter(args.ckpt, args.device)
    size = model_input_size(model)
    for path in tqdm(args.inputs, desc="clips", unit="clip", disable=len(args.inputs) < 2):
        with tqdm(desc=str(path), unit="frame", leave=False) as bar:

            def progress(done: int, total: int, bar: tqdm = bar) -> None:
                bar.total = total
                bar.update(done - bar.n)

            seg = segment_clip(path, segmenter, size=size, progress=progress)
        paths = write_segmentation(seg, args.out, overwrite=args.overwrite)
        print(f"{path}: {seg.labels.shape[0]} frames -> " + ", ".join(str(p) for p in paths.values()))
    return 0
