"""Ejection fraction from LV masks: geometry, volumes, beat detection, reports.

``compute_ef`` (``pipeline``) is the one-call API. The modules imported here are pure numpy/scipy (no model, no
I/O): ``contour`` (marching squares), ``geometry`` (area, contour, mitral base, apex, long axis, disc diameters),
``volumes`` (method of discs single-plane and biplane, area-length), ``camus_official`` (the official CAMUS biplane
script with its quirks), ``beats`` (ED/ES from the area curve), ``report`` (dataclasses, JSON and table text).
``gdkvm.ef.evaluate`` (not imported here) reads data sets and writes ``ef-eval``'s outputs.
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
