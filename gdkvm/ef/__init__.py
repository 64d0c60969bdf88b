"""Ejection fraction from LV masks: geometry, volumes, beat detection, reports (pure numpy, no model, no I/O).

``compute_ef`` is the one-call API; the submodules hold the pieces (``geometry``, ``volumes``,
``camus_official``, ``beats``, ``report``).
"""

from __future__ import annotations

from gdkvm.ef.beats import BeatFrames, NoBeatFoundError, detect_beats, smooth_curve
from gdkvm.ef.camus_official import CamusEF, camus_biplane, camus_diameters
from gdkvm.ef.geometry import N_DISCS, LVGeometry, Structure, lv_areas, lv_geometry
from gdkvm.ef.pipeline import compute_ef
from gdkvm.ef.report import Beat, EFReport, EFSummary, format_table, summarize
from gdkvm.ef.volumes import (
    ML,
    RELATIVE,
    Method,
    Volume,
    ejection_fraction,
    lv_volume,
    volume_area_length,
    volume_area_length_biplane,
    volume_biplane,
    volume_discs,
)

__all__ = [
    "ML",
    "N_DISCS",
    "RELATIVE",
    "Beat",
    "BeatFrames",
    "CamusEF",
    "EFReport",
    "EFSummary",
    "LVGeometry",
    "Method",
    "NoBeatFoundError",
    "Structure",
    "Volume",
    "camus_biplane",
    "camus_diameters",
    "compute_ef",
    "detect_beats",
    "ejection_fraction",
    "format_table",
    "lv_areas",
    "lv_geometry",
    "lv_volume",
    "smooth_curve",
    "summarize",
    "volume_area_length",
    "volume_area_length_biplane",
    "volume_biplane",
    "volume_discs",
]
