"""What the browser demo computes for one request: segment, EF beat by beat, plots and downloadable files.

The Gradio page (``app/app.py``) only lays out widgets and calls :func:`safe_analyze`; everything here is plain library
code, testable without a browser. The model is loaded once per process (:func:`get_model`); every request gets its own
streaming state and its own output folder.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from gdkvm.data.io import SUPPORTED_SUFFIXES, clip_extent, read_clip  # noqa: E402
from gdkvm.ef import EFReport, NoBeatFoundError, compute_ef  # noqa: E402
from gdkvm.errors import GdkvmError, InputError  # noqa: E402
from gdkvm.segment import Segmentation, model_input_size, segment_frames, write_segmentation  # noqa: E402

log = logging.getLogger(__name__)

MAX_FRAMES = 3000
"""Longest clip the demo accepts (about a minute at 50 fps); longer uploads get a readable error."""

MAX_PIXELS = 400_000_000
"""Largest clip the demo decodes, frames x height x width (400 MB of 8-bit frames, several times that while it works).
Checked from the file's header before any pixel is decoded, so a huge upload cannot exhaust the server's memory."""

VIEWS = ("A4C", "A2C")
"""Apical views the page offers for the uploaded clip."""

KEEP_OUTPUTS_S = 3600.0
"""Request folders older than this (seconds) are removed when a new request starts (Gradio keeps its own copies)."""

EXAMPLES = {
    "synthetic A4C, 3 beats, EF ~60% (mp4)": {"seed": 11, "view": "4CH", "ef": 60.0, "heart_rate": 72.0},
    "synthetic A4C, 3 beats, EF ~35% (mp4)": {"seed": 12, "view": "4CH", "ef": 35.0, "heart_rate": 80.0},
    "synthetic A2C, 3 beats, EF ~55% (mp4)": {"seed": 13, "view": "2CH", "ef": 55.0, "heart_rate": 66.0},
}
"""Bundled examples: written on first use from the synthetic generator (deterministic), never downloaded."""

BEAT_HEADERS = ["beat", "ED frame", "ES frame", "EDV", "ESV", "EF (%)", "status"]

_MODELS: dict[tuple[str, str], torch.nn.Module] = {}
_MODELS_LOCK = threading.Lock()
_ABS_PATH = re.compile(r"(?<![\w.])(?:/[^\s/:'\"]+)+/([^\s/:'\"]+)")


def get_model(ckpt: str, device: torch.device) -> torch.nn.Module:
    """Load a model once per process and share it between requests (each request gets its own memory state)."""
    from gdkvm.checkpoint import load_model

    key = (str(ckpt), str(device))
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_model(ckpt, device=device)
        return _MODELS[key]


def checkpoint_choices(ckpts: str | Sequence[str] = ("default",)) -> list[str]:
    """The models the page offers: the given checkpoints (first = preselected), then ``default`` and any other file
    in the bundled weights folder. The page offers only these, so a visitor cannot make the server open other files."""
    from gdkvm.checkpoint import WEIGHTS_DIR

    given = [ckpts] if isinstance(ckpts, str) else list(ckpts)
    bundled = sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))
    out: list[str] = []
    for c in [*given, "default", *bundled]:
        if str(c) not in out:
            out.append(str(c))
    return out


def example_clips(folder: str | Path | None = None, *, fps: float = 50.0, size: int = 112) -> dict[str, Path]:
    """Write (once) and return the bundled synthetic example clips, name -> mp4 path.

    Args:
        folder: where to keep them (default ``$GDKVM_CACHE/examples`` or ``~/.cache/gdkvm/examples``).
        fps: their frame rate; size: their square size in pixels.
    """
    from gdkvm.data.synthetic import make_clip
    from gdkvm.data.video import write_video

    root = Path(folder or os.environ.get("GDKVM_CACHE", Path.home() / ".cache" / "gdkvm")) / "examples"
    out = {}
    for i, (name, spec) in enumerate(EXAMPLES.items()):
        path = root / f"example{i + 1}_{spec['view']}_seed{spec['seed']}.mp4"
        if not path.is_file():
            frames = int(round(3.2 * 60.0 / spec["heart_rate"] * fps))
            clip, _, _ = make_clip(
                spec["seed"], view=spec["view"], size=(size, size), frames=frames, fps=fps, ef=spec["ef"],
                heart_rate=spec["heart_rate"],
            )  # fmt: skip
            write_video(path, clip, fps)
        out[name] = path
    return out


def example_view(name: str | None) -> str:
    """The view (``A4C``/``A2C``) of a bundled example, by its name."""
    return "A2C" if name in EXAMPLES and EXAMPLES[name]["view"] == "2CH" else "A4C"


def _check_frames(t: int, path: str | Path) -> None:
    if t > MAX_FRAMES:
        raise InputError(f"clip has {t} frames; the demo takes at most {MAX_FRAMES} (trim it)", path)


def check_clip_limits(path: str | Path) -> None:
    """Refuse, before decoding, a clip longer than :data:`MAX_FRAMES` or bigger than :data:`MAX_PIXELS`.

    Raises:
        InputError: the clip is too long or too large, in words (frames, size, the limit).
    """
    extent = clip_extent(path)
    if extent is None:
        return
    t, h, w = extent
    _check_frames(t, path)
    if t * h * w > MAX_PIXELS:
        raise InputError(
            f"clip is too large for the demo ({t} frames of {w}x{h} pixels); it takes up to "
            f"{MAX_PIXELS // 1_000_000} million pixels in all (trim or downsample it)",
            path,
        )


def gather_upload(files: str | Path | Sequence[str | Path], dest: str | Path) -> Path:
    """The clip to read from one upload: a single file, or a MetaImage header with its data file.

    Uploads land in separate folders, so several files are copied side by side into ``dest`` first (an ``.mhd``
    finds its ``.raw`` there).

    Raises:
        InputError: no file, or several files none of which is a clip header.
    """
    paths = [Path(files)] if isinstance(files, (str, Path)) else [Path(f) for f in files if f]
    if not paths:
        raise InputError("no file was uploaded")
    if len(paths) == 1:
        return paths[0]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copies = [Path(shutil.copy2(p, dest / p.name)) for p in paths]
    heads = [p for p in copies if p.name.lower().endswith(SUPPORTED_SUFFIXES)]
    if not heads:
        names = ", ".join(p.name for p in paths)
        raise InputError(f"none of the uploaded files ({names}) is a clip (.avi, .mp4, .dcm, .nii.gz or .mhd)")
    return next((p for p in heads if p.suffix.lower() == ".mhd"), heads[0])


def request_dir(root: str | Path | None = None) -> Path:
    """A fresh folder for one request's files under ``root`` (default ``$TMPDIR/gdkvm_demo``); folders older than
    :data:`KEEP_OUTPUTS_S` are removed on the way."""
    root = Path(root or Path(tempfile.gettempdir()) / "gdkvm_demo")
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in root.iterdir():
        try:
            if now - old.stat().st_mtime > KEEP_OUTPUTS_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:  # removed by a concurrent request
            pass
    out = root / uuid.uuid4().hex
    out.mkdir()
    return out


@dataclass(frozen=True)
class Analysis:
    """Everything the page shows for one request.

    Attributes:
        segmentation: the uploaded (shown) clip's masks.
        view: its view, ``A4C`` or ``A2C``.
        second: the other view's masks (biplane), or None.
        report: EF per beat and summary, or None when no beat was found (``message`` says why).
        overlay: path of the shown clip's overlay mp4 (H.264, plays in browsers).
        files: downloadable files (masks .nii.gz and areas CSV per clip, EF CSV).
        figure: LV area curve with ED/ES marked.
        message: one line for the user (EF summary, or why there is none).
    """

    segmentation: Segmentation
    view: str
    second: Segmentation | None
    report: EFReport | None
    overlay: Path
    files: list[Path]
    figure: Figure
    message: str


def plot_area_curve(
    areas: np.ndarray, report: EFReport | None, *, fps: float | None, unit: str, view: str = "A4C"
) -> Figure:
    """LV area per frame with the ED (red) and ES (blue) frames of every beat; rejected beats dashed.

    Args:
        areas: [T] LV area per frame.
        report: the EF report (its beats are marked), or None.
        fps: frames per second (x axis in seconds when known, else frames).
        unit: area unit for the y label.
        view: the view the areas come from; ``A2C`` marks the beats' A2C frames of a biplane report.
    """
    fig, ax = plt.subplots(figsize=(8.0, 2.8), dpi=100)
    x = np.arange(len(areas)) / fps if fps else np.arange(len(areas))
    ax.plot(x, areas, color="0.2", lw=1.5, label="LV area")
    a2c = view == "A2C" and report is not None and report.views == "A4C+A2C"
    for i, beat in enumerate(report.beats if report else []):
        ed, es = (beat.ed_a2c, beat.es_a2c) if a2c else (beat.ed, beat.es)
        style = "-" if beat.accepted else "--"
        for t, color, name in ((ed, "tab:red", "ED"), (es, "tab:blue", "ES")):
            if t is not None and 0 <= t < len(x):
                ax.axvline(x[t], color=color, ls=style, lw=1, label=name if i == 0 else None)
    ax.set_xlabel("time (s)" if fps else "frame")
    ax.set_ylabel(f"LV area ({unit})")
    title = f"LV area ({view})"
    if report is not None and report.summary.mean is not None:
        title += f" - EF {report.summary.mean:.1f}% over {report.summary.n_accepted} beat(s)"
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def beat_rows(report: EFReport | None) -> list[list[object]]:
    """Per-beat table rows: beat, ED frame, ES frame (of the A4C or only clip), EDV, ESV, EF, status."""
    if report is None:
        return []
    rows = []
    for i, b in enumerate(report.beats, start=1):
        fmt = lambda v: None if v is None else round(float(v), 1)  # noqa: E731
        rows.append([i, b.ed, b.es, fmt(b.edv), fmt(b.esv), fmt(b.ef), "accepted" if b.accepted else b.reason])
    return rows


def _write_ef_csv(path: Path, report: EFReport | None) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*BEAT_HEADERS, "unit", "method", "views"])
        for row in beat_rows(report):
            writer.writerow([*row, report.unit, report.method, report.views])
    return path


def _ef(seg4: Segmentation, seg2: Segmentation | None, fps: float | None, view: str) -> tuple[EFReport | None, str]:
    """EF of the A4C clip (or the only clip, of view ``view``) and optionally its A2C partner, and the summary line."""
    try:
        report = compute_ef(
            seg4.labels,
            spacing=seg4.clip.spacing,
            fps=fps,
            masks_a2c=None if seg2 is None else seg2.labels,
            spacing_a2c=None if seg2 is None else seg2.clip.spacing,
            fps_a2c=None if seg2 is None else (seg2.clip.fps or fps),
        )
    except (NoBeatFoundError, ValueError) as err:  # no beat, or no frame rate to detect beats with
        return None, f"No EF: {err}"
    s = report.summary
    if s.mean is None:
        return report, f"No beat passed the checks ({s.n_beats} found); see the table for the reasons."
    spread = f" (median {s.median:.1f}, SD {s.sd:.1f})" if s.sd is not None else ""
    views = report.views if seg2 is not None else view
    return report, f"EF {s.mean:.1f}%{spread} over {s.n_accepted} beat(s), {report.method}, {views}"


def analyze(
    path: str | Path | Sequence[str | Path],
    *,
    view: str = "A4C",
    second_path: str | Path | Sequence[str | Path] | None = None,
    ckpt: str = "default",
    fps: float | None = None,
    device: str | torch.device | None = None,
    out_dir: str | Path | None = None,
    progress=None,
) -> Analysis:
    """Segment one clip (and optionally the other apical view of the same heart), compute the EF, write downloads.

    Args:
        path: the clip to show: .avi, .mp4, .nii.gz, .mhd (with its .raw: pass both) or DICOM.
        view: its view, ``A4C`` or ``A2C`` (a single clip gives single-plane EF whatever its view).
        second_path: optional clip of the other view, for biplane EF.
        ckpt: checkpoint path or bundled name (``default``).
        fps: frame rate to use when the file has none (overrides nothing the file states).
        device: torch device (default: GPU when present).
        out_dir: where to write (default: a fresh folder from :func:`request_dir`).
        progress: ``progress(fraction, desc=...)`` callable (Gradio's Progress fits).

    Raises:
        GdkvmError: bad input (named file and problem), no usable model.
    """
    from gdkvm.inference import VideoSegmenter

    if view not in VIEWS:
        raise InputError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    out = Path(out_dir) if out_dir else request_dir()
    other = "A2C" if view == "A4C" else "A4C"
    clips = [(gather_upload(path, out / "input"), view)]
    if second_path:
        clips.append((gather_upload(second_path, out / "input2"), other))
    read = []
    for clip_path, label in clips:  # a bad file fails here, before the model is loaded
        check_clip_limits(clip_path)
        clip = read_clip(clip_path)
        _check_frames(len(clip.frames), clip_path)  # again: the header may understate it
        read.append((clip, label))
    if progress is not None:
        progress(0.0, desc="loading the model")
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = get_model(ckpt, dev)
    size = model_input_size(model)
    segs: dict[str, Segmentation] = {}
    for n, (clip, label) in enumerate(read):

        def step(done: int, total: int, n: int = n, label: str = label) -> None:
            if progress is not None:
                progress((n + done / total) / len(read), desc=f"segmenting {label}: frame {done}/{total}")

        labels, lv_prob = segment_frames(clip.frames, VideoSegmenter(model, device=dev), size=size, progress=step)
        segs[label] = Segmentation(clip=clip, labels=labels, lv_prob=lv_prob)
    seg, second = segs[view], segs.get(other)
    use_fps = seg.clip.fps or fps
    seg4, seg2 = (segs["A4C"], segs["A2C"]) if second is not None else (seg, None)
    report, message = _ef(seg4, seg2, seg4.clip.fps or fps, view)
    if use_fps is None and report is None:
        message += " (the file states no frame rate: enter one to detect beats)"
    paths = write_segmentation(seg, out, overwrite=True)
    files = [paths["masks"], paths["areas"]]
    if second is not None:
        more = write_segmentation(second, out / other, overwrite=True)
        files += [more["masks"], more["areas"]]
    files.append(_write_ef_csv(out / "ef_beats.csv", report))
    fig = plot_area_curve(seg.lv_area, report, fps=use_fps, unit=seg.area_unit, view=view)
    return Analysis(seg, view, second, report, paths["overlay"], files, fig, message)


def readable_error(err: BaseException) -> str:
    """One line for the page: the error with server folders stripped from file paths (only file names stay)."""
    return _ABS_PATH.sub(r"\1", str(err))


def safe_analyze(*args, **kwargs) -> tuple[Analysis | None, str]:
    """:func:`analyze`, with any error turned into a message for the page (the server keeps serving)."""
    try:
        return analyze(*args, **kwargs), ""
    except GdkvmError as err:
        return None, f"Error: {readable_error(err)}"
    except MemoryError:
        return None, "Error: the clip does not fit in the server's memory; trim or downsample it"
    except Exception as err:  # a corrupt upload can fail deep inside a decoder: report it, keep serving
        log.exception("demo request failed")
        return None, f"Error: could not process this upload ({type(err).__name__}: {readable_error(err)})"
