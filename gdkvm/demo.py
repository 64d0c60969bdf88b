"""What the browser demo computes for one request: segment, EF beat by beat, plots and downloadable files.

The Gradio page (``app/app.py``) only lays out widgets and calls :func:`analyze`; everything here is plain library code,
testable without a browser.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from gdkvm.ef import EFReport, NoBeatFoundError, compute_ef  # noqa: E402
from gdkvm.errors import GdkvmError, InputError  # noqa: E402
from gdkvm.segment import Segmentation, model_input_size, segment_clip, write_segmentation  # noqa: E402

log = logging.getLogger(__name__)

MAX_FRAMES = 3000
"""Longest clip the demo accepts (about a minute at 50 fps); longer uploads get a readable error."""

EXAMPLES = {
    "synthetic A4C, 3 beats, EF ~60% (mp4)": {"seed": 11, "view": "4CH", "ef": 60.0, "heart_rate": 72.0},
    "synthetic A4C, 3 beats, EF ~35% (mp4)": {"seed": 12, "view": "4CH", "ef": 35.0, "heart_rate": 80.0},
    "synthetic A2C, 3 beats, EF ~55% (mp4)": {"seed": 13, "view": "2CH", "ef": 55.0, "heart_rate": 66.0},
}
"""Bundled examples: written on first use from the synthetic generator (deterministic), never downloaded."""

_MODELS: dict[tuple[str, str], torch.nn.Module] = {}
_MODELS_LOCK = threading.Lock()


def get_model(ckpt: str, device: torch.device) -> torch.nn.Module:
    """Load a model once per process and share it between requests (each request gets its own memory state)."""
    from gdkvm.checkpoint import load_model

    key = (str(ckpt), str(device))
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_model(ckpt, device=device)
        return _MODELS[key]


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
                spec["seed"],
                view=spec["view"],
                size=(size, size),
                frames=frames,
                fps=fps,
                ef=spec["ef"],
                heart_rate=spec["heart_rate"],
            )
            write_video(path, clip, fps)
        out[name] = path
    return out


@dataclass(frozen=True)
class Analysis:
    """Everything the page shows for one request.

    Attributes:
        segmentation: the A4C (or only) clip's masks.
        report: EF per beat and summary, or None when no beat was found (``message`` says why).
        overlay: path of the overlay mp4 (H.264).
        files: downloadable files (masks .nii.gz, areas CSV, EF CSV).
        figure: LV area curve with ED/ES marked.
        message: one line for the user (EF summary, or why there is none).
    """

    segmentation: Segmentation
    report: EFReport | None
    overlay: Path
    files: list[Path]
    figure: Figure
    message: str


def plot_area_curve(areas: np.ndarray, report: EFReport | None, *, fps: float | None, unit: str) -> Figure:
    """LV area per frame with the ED (red) and ES (blue) frames of every beat; rejected beats dashed.

    Args:
        areas: [T] LV area per frame.
        report: the EF report (its beats are marked), or None.
        fps: frames per second (x axis in seconds when known, else frames).
        unit: area unit for the y label.
    """
    fig, ax = plt.subplots(figsize=(7.0, 3.2), dpi=100)
    x = np.arange(len(areas)) / fps if fps else np.arange(len(areas))
    ax.plot(x, areas, color="0.2", lw=1.5, label="LV area")
    for i, beat in enumerate(report.beats if report else []):
        style = "-" if beat.accepted else "--"
        ax.axvline(x[beat.ed], color="tab:red", ls=style, lw=1, label="ED" if i == 0 else None)
        ax.axvline(x[beat.es], color="tab:blue", ls=style, lw=1, label="ES" if i == 0 else None)
    ax.set_xlabel("time (s)" if fps else "frame")
    ax.set_ylabel(f"LV area ({unit})")
    title = "LV area"
    if report is not None and report.summary.mean is not None:
        title += f" - EF {report.summary.mean:.1f}% over {report.summary.n_accepted} beat(s)"
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def beat_rows(report: EFReport | None) -> list[list[object]]:
    """Per-beat table rows: beat, ED frame, ES frame, EDV, ESV, EF, status."""
    if report is None:
        return []
    rows = []
    for i, b in enumerate(report.beats, start=1):
        fmt = lambda v: None if v is None else round(float(v), 1)  # noqa: E731
        rows.append([i, b.ed, b.es, fmt(b.edv), fmt(b.esv), fmt(b.ef), "accepted" if b.accepted else b.reason])
    return rows


BEAT_HEADERS = ["beat", "ED frame", "ES frame", "EDV", "ESV", "EF (%)", "status"]


def _write_ef_csv(path: Path, report: EFReport | None) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*BEAT_HEADERS, "unit", "method"])
        for row in beat_rows(report):
            writer.writerow([*row, report.unit, report.method])
    return path


def _ef(seg: Segmentation, seg_a2c: Segmentation | None, fps: float | None) -> tuple[EFReport | None, str]:
    try:
        report = compute_ef(
            seg.labels,
            spacing=seg.clip.spacing,
            fps=fps,
            masks_a2c=None if seg_a2c is None else seg_a2c.labels,
            spacing_a2c=None if seg_a2c is None else seg_a2c.clip.spacing,
            fps_a2c=None if seg_a2c is None else (seg_a2c.clip.fps or fps),
        )
    except NoBeatFoundError as err:
        return None, f"No EF: {err}"
    except ValueError as err:  # e.g. no frame rate to detect beats with
        return None, f"No EF: {err}"
    s = report.summary
    if s.mean is None:
        return report, f"No beat passed the checks ({s.n_beats} found); see the table for the reasons."
    spread = f" (median {s.median:.1f}, SD {s.sd:.1f})" if s.sd is not None else ""
    return report, f"EF {s.mean:.1f}%{spread} over {s.n_accepted} beat(s), {report.method}, {report.views}"


def analyze(
    path: str | Path,
    *,
    ckpt: str = "default",
    a2c_path: str | Path | None = None,
    fps: float | None = None,
    device: str | torch.device | None = None,
    out_dir: str | Path | None = None,
    progress=None,
) -> Analysis:
    """Segment one clip (and optionally its A2C partner), compute the EF and write the downloads.

    Args:
        path: the A4C (or only) clip: .avi, .mp4, .nii.gz, .mhd or DICOM.
        ckpt: checkpoint path or ``default``.
        a2c_path: optional A2C clip for biplane EF.
        fps: frame rate to use when the file has none (overrides nothing the file states).
        device: torch device (default: GPU when present).
        out_dir: where to write (default: a fresh temporary folder).
        progress: ``progress(fraction, desc=...)`` callable (Gradio's Progress fits).

    Raises:
        GdkvmError: bad input (named file and problem), no usable model.
    """
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = get_model(ckpt, dev)
    from gdkvm.inference import VideoSegmenter

    size = model_input_size(model)
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="gdkvm_demo_"))
    clips = [Path(path)] + ([Path(a2c_path)] if a2c_path else [])
    segs = []
    for n, clip_path in enumerate(clips):
        label = "A4C" if n == 0 else "A2C"

        def step(done: int, total: int, n: int = n, label: str = label, src: Path = clip_path) -> None:
            if total > MAX_FRAMES:
                raise InputError(f"clip has {total} frames; the demo takes at most {MAX_FRAMES}", src)
            if progress is not None:
                progress((n + done / total) / len(clips), desc=f"segmenting {label}: frame {done}/{total}")

        segs.append(segment_clip(clip_path, VideoSegmenter(model, device=dev), size=size, progress=step))
    seg = segs[0]
    use_fps = seg.clip.fps or fps
    report, message = _ef(seg, segs[1] if len(segs) > 1 else None, use_fps)
    if use_fps is None and report is None:
        message += " (the file states no frame rate: enter one to detect beats)"
    paths = write_segmentation(seg, out, overwrite=True)
    files = [paths["masks"], paths["areas"], _write_ef_csv(out / "ef_beats.csv", report)]
    fig = plot_area_curve(seg.lv_area, report, fps=use_fps, unit=seg.area_unit)
    return Analysis(seg, report, paths["overlay"], files, fig, message)


def safe_analyze(*args, **kwargs) -> tuple[Analysis | None, str]:
    """:func:`analyze`, with any error turned into a message for the page (the server keeps serving)."""
    try:
        return analyze(*args, **kwargs), ""
    except GdkvmError as err:
        return None, f"Error: {err}"
    except Exception as err:  # a corrupt upload can fail deep inside a decoder: report it, keep serving
        log.exception("demo request failed")
        return None, f"Error: could not process this upload ({type(err).__name__}: {err})"
