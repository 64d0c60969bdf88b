"""EF results as dataclasses, with JSON and plain-text table rendering (shared by the CLI and the demo)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["Beat", "EFReport", "EFSummary", "format_table", "summarize", "to_jsonable"]


@dataclass(frozen=True)
class Beat:
    """One ED -> ES systole.

    Attributes:
        ed: ED frame index (0-based) in the A4C (or only) clip.
        es: ES frame index.
        edv: ED volume (``EFReport.unit``), None when it could not be computed.
        esv: ES volume.
        ef: EF in percent, None when not computed.
        accepted: whether the beat enters the summary.
        reason: why it was rejected (None when accepted).
        amplitude: (ED area - ES area) over the area curve's robust range (5th-95th percentile); NaN when the
            frames were given explicitly.
        ed_a2c: ED frame in the A2C clip (biplane only).
        es_a2c: ES frame in the A2C clip (biplane only).
    """

    ed: int
    es: int
    edv: float | None
    esv: float | None
    ef: float | None
    accepted: bool
    reason: str | None = None
    amplitude: float = math.nan
    ed_a2c: int | None = None
    es_a2c: int | None = None


@dataclass(frozen=True)
class EFSummary:
    """EF over the accepted beats (None when there is none; ``sd`` needs two beats).

    Attributes:
        mean, median, sd: EF in percent (sd with ddof=1).
        n_beats: beats found (accepted or not).
        n_accepted: beats in the summary.
    """

    mean: float | None
    median: float | None
    sd: float | None
    n_beats: int
    n_accepted: int


@dataclass(frozen=True)
class EFReport:
    """The EF of one clip (or A4C + A2C pair).

    Attributes:
        method: volume method (``discs``, ``biplane``, ``area-length``, ``camus``).
        unit: volume unit, ``"mL"`` or ``"px^3 (relative)"`` (EF is valid either way).
        views: ``"A4C"`` (single plane) or ``"A4C+A2C"``.
        beats: all beats found, accepted or not, in time order.
        summary: EF statistics over the accepted beats.
        fps: frame rate used for beat detection (None for explicit ED/ES frames).
        beat_source: ``"detected"`` (from the LV area curve) or ``"given"`` (explicit ED/ES frames).
        areas: [T] LV area curve of the A4C clip (mm^2 or px^2), for plots.
        notes: free-form remarks (mitral base rule, warnings).
    """

    method: str
    unit: str
    views: str
    beats: list[Beat]
    summary: EFSummary
    fps: float | None
    beat_source: str
    areas: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self, *, with_areas: bool = False) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None; the area curve only on request)."""
        out = to_jsonable(asdict(self))
        if not with_areas:
            out.pop("areas")
        return out

    def to_json(self, *, with_areas: bool = False, indent: int = 2) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(with_areas=with_areas), indent=indent)


def to_jsonable(obj: Any) -> Any:
    """Nested dicts/lists with numpy scalars made plain and NaN/inf made None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def summarize(beats: list[Beat]) -> EFSummary:
    """Mean, median and SD of EF over the accepted beats.

    Args:
        beats: all beats.

    Returns:
        the EFSummary.
    """
    efs = np.array([b.ef for b in beats if b.accepted and b.ef is not None], dtype=np.float64)
    n = len(efs)
    return EFSummary(
        mean=float(efs.mean()) if n else None,
        median=float(np.median(efs)) if n else None,
        sd=float(efs.std(ddof=1)) if n >= 2 else None,
        n_beats=len(beats),
        n_accepted=n,
    )


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def format_table(report: EFReport) -> str:
    """Per-beat table (ED frame, ES frame, EDV, ESV, EF, status) and the summary, as plain text."""
    biplane = "+" in report.views
    head = ["beat", "ED", "ES"] + (["ED A2C", "ES A2C"] if biplane else [])
    head += [f"EDV [{report.unit}]", f"ESV [{report.unit}]", "EF [%]", "status"]
    rows = []
    for k, b in enumerate(report.beats, 1):
        row = [str(k), str(b.ed), str(b.es)]
        if biplane:
            row += ["-" if b.ed_a2c is None else str(b.ed_a2c), "-" if b.es_a2c is None else str(b.es_a2c)]
        row += [_fmt(b.edv), _fmt(b.esv), _fmt(b.ef), "ok" if b.accepted else f"rejected: {b.reason}"]
        rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [f"EF by {report.method} ({report.views}, beats {report.beat_source}, volumes in {report.unit})"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    s = report.summary
    if s.n_accepted:
        lines.append(
            f"EF mean {_fmt(s.mean)} %, median {_fmt(s.median)} %, SD {_fmt(s.sd)} "
            f"over {s.n_accepted} of {s.n_beats} beat(s)"
        )
    else:
        lines.append(f"no accepted beat (of {s.n_beats} found): no EF")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)
