"""``gdkvm ef`` (EF of one clip or an A4C + A2C pair, beat by beat) and ``gdkvm ef-eval`` (EF over a data set).

Exit status of ``gdkvm ef``: 0 with an EF, 1 when no beat was accepted (the table says why), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gdkvm.ef import Method, NoBeatFoundError, compute_ef, format_table, lv_areas
from gdkvm.errors import GdkvmError, InputError

logger = logging.getLogger(__name__)

MASK_SUFFIXES = (".nii", ".nii.gz", ".mhd", ".mha", ".nrrd", ".npy", ".npz")
EVAL_OUTPUTS = ("ef_metrics.json", "per_case.csv", "bland_altman.png", "scatter.png")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def read_masks(path: str | Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Read a label volume: NIfTI / MetaImage / NRRD (with spacing from the header) or .npy / .npz (no spacing).

    Returns:
        masks [T, H, W] integer label ids (a 2D image is one frame), and (row, col) spacing in mm or None.

    Raises:
        InputError: missing or unreadable file, wrong shape, non-integer or negative labels, no LV anywhere.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in MASK_SUFFIXES:
        raise InputError(
            f"unknown mask file type {suffix or '(none)'!r}; expected one of {', '.join(MASK_SUFFIXES)}", path
        )
    if not path.is_file():
        raise InputError("file not found", path)
    spacing = None
    if suffix in (".npy", ".npz"):
        try:
            data = np.load(path, allow_pickle=False)
            if suffix == ".npz":
                data = data["masks"] if "masks" in data.files else data[data.files[0]]
        except (OSError, ValueError, IndexError) as err:
            raise InputError(f"cannot read the array ({err})", path) from None
        arr = np.asarray(data)
    else:
        from gdkvm.data.camus import read_image

        arr, spacing = read_image(path)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or 0 in arr.shape:
        raise InputError(f"masks must be a label volume [T, H, W], got shape {list(arr.shape)}", path)
    if not np.issubdtype(arr.dtype, np.integer) and not np.array_equal(arr, np.round(arr)):
        raise InputError("masks must hold integer label ids (0 background, 1 LV, ...), found fractional values", path)
    if arr.min() < 0:
        raise InputError(f"masks hold a negative label ({arr.min()})", path)
    return (arr if np.issubdtype(arr.dtype, np.integer) else arr.astype(np.int64)), spacing


def _ef_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gdkvm ef",
        description="Ejection fraction of a clip (single plane) or an A4C + A2C pair (biplane), beat by beat.",
    )
    p.add_argument("input", help="A4C clip (video, NIfTI/MetaImage, DICOM); with --masks it gives fps/spacing only")
    p.add_argument("--a2c", help="A2C clip of the same patient (biplane)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--ckpt", help="segment the clip(s) with this checkpoint (default: the bundled 'default' model)")
    src.add_argument("--masks", help="label volume [T, H, W] of INPUT (.nii.gz, .mhd, .npy, ...; LV = 1)")
    p.add_argument("--masks-a2c", help="label volume of the A2C clip")
    p.add_argument("--method", choices=[m.value for m in Method], help="default: biplane with two views, else discs")
    p.add_argument("--fps", type=float, help="frame rate (overrides the file's)")
    p.add_argument("--fps-a2c", type=float, help="frame rate of the A2C clip (default: --fps or its file's)")
    p.add_argument("--spacing", type=float, nargs=2, metavar=("ROW_MM", "COL_MM"), help="pixel size (overrides)")
    p.add_argument("--ed-es", type=int, nargs=2, metavar=("ED", "ES"), help="explicit 0-based ED and ES frames")
    p.add_argument("--ed-es-a2c", type=int, nargs=2, metavar=("ED", "ES"), help="the same for the A2C clip")
    p.add_argument(
        "--half-cycle",
        action="store_true",
        help="the clip is one ED..ES half beat (CAMUS half sequence): ED = largest LV, ES = smallest",
    )
    p.add_argument("--lv-label", type=int, default=1, help="LV label id in the masks (default 1)")
    p.add_argument("--device", help="cuda, cuda:1 or cpu (model path only)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def _clip_info(path: Path) -> tuple[float | None, tuple[float, float] | None]:
    """(fps, spacing) of a clip file, (None, None) when it cannot be read."""
    from gdkvm.data.io import read_clip

    try:
        clip = read_clip(path)
    except GdkvmError as err:
        logger.info("no frame rate / spacing from %s (%s)", path, err)
        return None, None
    return clip.fps, clip.spacing


def _segment_file(path: str, ckpt: str, device: str | None) -> tuple[np.ndarray, float | None, tuple | None]:
    """Segment a clip with a checkpoint: (labels [T, H, W], fps, spacing)."""
    try:
        from gdkvm.cli.common import build_segmenter
        from gdkvm.segment import model_input_size, segment_clip

        segmenter, model = build_segmenter(ckpt, device)
    except ImportError as err:
        raise GdkvmError(f"model loading not available ({err}); pass --masks instead") from None
    from tqdm import tqdm

    with tqdm(desc=f"segmenting {Path(path).name}", unit="frame", file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        seg = segment_clip(path, segmenter, size=model_input_size(model), progress=progress)
    return seg.labels, seg.clip.fps, seg.clip.spacing


def _view(args, clip: str, masks_path: str | None, fps_arg: float | None, label: str) -> dict:
    """masks, spacing and fps of one view, from --masks (+ the clip's header) or by segmenting the clip."""
    clip_path = Path(clip)
    if not clip_path.exists():
        raise InputError("file not found", clip_path)
    if masks_path is not None:
        masks, spacing = read_masks(masks_path)
        fps = fps_arg
        if fps is None or spacing is None:
            clip_fps, clip_sp = (
                _clip_info(clip_path) if clip_path.resolve() != Path(masks_path).resolve() else (None, None)
            )
            if fps is None:
                fps = clip_fps if clip_fps is not None else _clip_info(Path(masks_path))[0]
            spacing = spacing if spacing is not None else clip_sp
        source = masks_path
    else:
        masks, fps_file, spacing = _segment_file(clip, args.ckpt, args.device)
        fps = fps_arg if fps_arg is not None else fps_file
        source = clip
    if not (masks == args.lv_label).any():
        found = ", ".join(str(v) for v in np.unique(masks)[:8])
        msg = f"empty masks: no LV (label {args.lv_label}) in any of the {len(masks)} frames of the {label} view"
        raise InputError(f"{msg} (labels found: {found}; see --lv-label)", source)
    return {"masks": masks, "spacing": tuple(args.spacing) if args.spacing else spacing, "fps": fps, "source": source}


def _half_cycle(v: dict, lv_label: int) -> tuple[int, int]:
    area = lv_areas(v["masks"], label=lv_label)
    return int(np.argmax(area)), int(np.argmin(area))


def main_ef(argv: list[str]) -> int:
    """``gdkvm ef``: print the per-beat table and summary (or JSON); see the module docstring for exit codes."""
    args = _ef_parser().parse_args(argv)
    if args.ckpt is None and args.masks is None:
        args.ckpt = "default"  # no masks given: segment the clip(s) with the bundled model
    if args.masks_a2c and not args.masks:
        raise InputError("--masks-a2c needs --masks for the A4C view", args.masks_a2c)
    if args.a2c and args.masks and not args.masks_a2c:
        raise InputError("with --masks, give the A2C clip's label volume as --masks-a2c", args.a2c)
    two = bool(args.masks_a2c or (args.a2c and args.ckpt))
    if args.method in ("biplane", "camus") and not two:
        raise InputError(f"the {args.method} method needs the A2C view: give --a2c (and --masks-a2c)", args.input)
    a4c = _view(args, args.input, args.masks, args.fps, "A4C")
    a2c = None
    if two:
        a2c = _view(args, args.a2c or args.masks_a2c, args.masks_a2c, args.fps_a2c or args.fps, "A2C")
    ed_es, ed_es_a2c = args.ed_es, args.ed_es_a2c
    if args.half_cycle:
        ed_es = ed_es or _half_cycle(a4c, args.lv_label)
        ed_es_a2c = ed_es_a2c or (_half_cycle(a2c, args.lv_label) if a2c else None)
    if ed_es is None and a4c["fps"] is None:
        raise InputError(
            "unknown frame rate: pass --fps (or --ed-es ED ES / --half-cycle for one half beat)", args.input
        )
    try:
        report = compute_ef(
            a4c["masks"],
            spacing=a4c["spacing"],
            fps=a4c["fps"],
            method=args.method,
            masks_a2c=None if a2c is None else a2c["masks"],
            spacing_a2c=None if a2c is None else a2c["spacing"],
            fps_a2c=None if a2c is None else a2c["fps"],
            ed_es=None if ed_es is None else tuple(ed_es),
            ed_es_a2c=None if ed_es_a2c is None else tuple(ed_es_a2c),
            lv_label=args.lv_label,
        )
    except NoBeatFoundError as err:
        raise InputError(f"{err} (for a single ED..ES half beat use --half-cycle or --ed-es)", a4c["source"]) from None
    except ValueError as err:
        raise InputError(str(err), a4c["source"]) from None
    if args.json:
        out = {"input": args.input, "a2c": args.a2c, "masks": args.masks, "masks_a2c": args.masks_a2c}
        print(json.dumps({**out, **report.to_dict()}, indent=2))
    else:
        print(format_table(report))
    return 0 if report.summary.n_accepted else 1


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gdkvm ef-eval",
        description="EF over a data set against its reference (and the true EF on synthetic data).",
    )
    p.add_argument("--data", required=True, choices=("camus", "echonet"))
    p.add_argument("--root", required=True, help="data set folder")
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="segment with this checkpoint (or 'default')")
    src.add_argument("--source", choices=("gt",), help="'gt': score the EF method on the ground-truth masks")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--method", help="method for the headline and plots (default camus on CAMUS, discs on EchoNet)")
    p.add_argument("--device", help="cuda, cuda:1 or cpu (model path only)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier results in --out")
    return p


def _segment_fn(ckpt: str, device: str | None) -> Callable[[np.ndarray], np.ndarray]:
    try:
        from gdkvm.cli.common import build_segmenter
        from gdkvm.segment import model_input_size, segment_frames

        segmenter, model = build_segmenter(ckpt, device)
    except ImportError as err:
        raise GdkvmError(f"model loading not available ({err}); use --source gt") from None
    size = model_input_size(model)
    return lambda frames: segment_frames(frames, segmenter, size=size)[0]


def _progress(desc: str) -> Callable:
    from tqdm import tqdm

    return lambda items: tqdm(items, desc=desc, unit="case", file=sys.stderr)


def main_ef_eval(argv: list[str]) -> int:
    """``gdkvm ef-eval``: writes ef_metrics.json, per_case.csv, bland_altman.png and scatter.png into --out."""
    from gdkvm.ef import evaluate as ev

    args = _eval_parser().parse_args(argv)
    methods = ev.CAMUS_METHODS if args.data == "camus" else ev.ECHONET_METHODS
    primary = args.method or methods[0]
    allowed = methods + (("discs-beats",) if args.ckpt and args.data == "echonet" else ())
    if primary not in allowed:
        raise InputError(f"--method {primary!r} is not scored on {args.data}; choose one of {', '.join(allowed)}")
    out = Path(args.out)
    existing = [n for n in EVAL_OUTPUTS if (out / n).exists()]
    if existing and not args.overwrite:
        raise InputError(f"already holds {', '.join(existing)}; pass --overwrite or choose another --out", out)
    segment = None if args.source == "gt" else _segment_fn(args.ckpt, args.device)
    progress = _progress(f"ef-eval {args.data} {args.split}")
    info = {"data": args.data, "root": str(args.root), "split": args.split, "source": args.source or args.ckpt}
    if args.data == "camus":
        rows = ev.evaluate_camus(args.root, args.split, segment=segment, progress=progress)
        info["reference"] = "CAMUS cfg EF (2023: official biplane script on the ground truth, integer %)"
    else:
        rows, dropped = ev.evaluate_echonet(args.root, args.split, segment=segment, progress=progress)
        info["reference"] = "EchoNet FileList EF (clinical report value)"
        info["dropped_by_loader"] = dropped
    metrics = ev.write_outputs(rows, out, primary=primary, info=info)
    for method, m in metrics["methods"].items():
        parts = [f"{method:<12} n={m['n_cases'] - m['n_no_ef']}/{m['n_cases']}"]
        for key in ("vs_reference", "vs_truth"):
            s = m[key]
            if s and s["n"]:
                parts.append(f"{key}: MAE {s['mae']:.2f} bias {s['bias']:+.2f} r {_num(s['pearson_r'])}")
        print("  ".join(parts))
    print(f"wrote {', '.join(str(out / n) for n in EVAL_OUTPUTS)}")
    return 0


def _num(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.3f}"
