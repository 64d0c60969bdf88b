"""Geometry and volume formulas against closed forms (hand-computed TEST_CASE tables)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gdkvm.ef import (
    Method,
    camus_biplane,
    camus_diameters,
    ejection_fraction,
    lv_areas,
    lv_geometry,
    lv_volume,
)
from tests.ef.shapes import ellipse, half_ellipse

# (semi-axis along the long axis a, other semi-axis b) in px on a 256 x 256 grid: full ellipse -> 4/3 pi a b^2
TEST_CASE_ELLIPSE = [
    pytest.param(80.0, 30.0, id="a80_b30"),
    pytest.param(100.0, 45.0, id="a100_b45"),
    pytest.param(60.0, 25.5, id="a60_b25.5"),
]


@pytest.mark.parametrize("a,b", TEST_CASE_ELLIPSE)
def test_discs_full_ellipse_matches_ellipsoid(a: float, b: float) -> None:
    m = ellipse(256, 256, (128.0, 120.0), (a, b))
    vol = lv_volume(m, method="discs")
    assert vol.unit == "px^3 (relative)"
    assert vol.value == pytest.approx(4.0 / 3.0 * math.pi * a * b * b, rel=0.02)


@pytest.mark.parametrize("a,b", TEST_CASE_ELLIPSE)
def test_discs_half_ellipse_matches_half_ellipsoid(a: float, b: float) -> None:
    m = half_ellipse(256, 256, base_row=220.0, col=128.0, length=a, radius=b)
    g = lv_geometry(m)
    assert g.base_rule == "geometric"
    assert g.base[:, 0] == pytest.approx([220.0, 220.0], abs=1.0)  # the flat cut is the base
    assert g.length == pytest.approx(a, abs=1.0)
    assert lv_volume(m).value == pytest.approx(2.0 / 3.0 * math.pi * a * b * b, rel=0.015)


@pytest.mark.parametrize("a,b", TEST_CASE_ELLIPSE)
def test_area_length_formula(a: float, b: float) -> None:
    m = half_ellipse(256, 256, base_row=220.0, col=128.0, length=a, radius=b)
    g = lv_geometry(m)
    vol = lv_volume(m, method="area-length").value
    assert vol == pytest.approx(8.0 * g.area**2 / (3.0 * math.pi * g.length), rel=1e-9)
    # for a half ellipse A = pi a b / 2 and L = a, so 8 A^2 / (3 pi L) = 2/3 pi a b^2 exactly
    assert vol == pytest.approx(2.0 / 3.0 * math.pi * a * b * b, rel=0.03)


# (a, b A4C half-width, c A2C half-width): biplane discs of two half ellipses -> 2/3 pi a b c
TEST_CASE_BIPLANE = [
    pytest.param(80.0, 30.0, 22.0, id="a80_b30_c22"),
    pytest.param(90.0, 40.0, 34.0, id="a90_b40_c34"),
]


@pytest.mark.parametrize("a,b,c", TEST_CASE_BIPLANE)
def test_biplane_two_ellipses(a: float, b: float, c: float) -> None:
    m4 = half_ellipse(256, 256, base_row=220.0, col=128.0, length=a, radius=b)
    m2 = half_ellipse(240, 200, base_row=200.0, col=100.0, length=a, radius=c)
    vol = lv_volume(m4, method="biplane", labels_a2c=m2).value
    assert vol == pytest.approx(2.0 / 3.0 * math.pi * a * b * c, rel=0.015)
    with pytest.raises(ValueError, match="A2C"):
        lv_volume(m4, method="biplane")


def test_full_ellipse_biplane_and_area_length() -> None:
    m4 = ellipse(256, 256, (128.0, 128.0), (90.0, 35.0))
    m2 = ellipse(256, 256, (128.0, 128.0), (90.0, 25.0))
    expected = 4 / 3 * math.pi * 90 * 35 * 25
    assert lv_volume(m4, method="biplane", labels_a2c=m2).value == pytest.approx(expected, rel=0.02)
    assert lv_volume(m4, method="area-length").value == pytest.approx(4 / 3 * math.pi * 90 * 35 * 35, rel=0.02)


def test_spacing_gives_millilitres_and_anisotropy() -> None:
    # 60 mm x 20 mm half ellipse drawn on 0.5 x 0.25 mm pixels: V = 2/3 pi 60 20^2 mm^3 = 50.27 mL
    sp = (0.5, 0.25)
    m = half_ellipse(170, 200, base_row=75.0, col=25.0, length=60.0, radius=20.0, sp=sp)
    vol = lv_volume(m, sp, method="discs")
    assert vol.unit == "mL"
    assert vol.value == pytest.approx(2.0 / 3.0 * math.pi * 60 * 400 / 1000, rel=0.015)
    assert lv_areas(m[None], spacing=sp)[0] == pytest.approx(m.sum() * 0.125)
    # NaN spacing means unknown: relative units, and the same EF-relevant shape
    assert lv_volume(m, (float("nan"), float("nan"))).unit == "px^3 (relative)"


# EF of known (EDV, ESV) pairs
TEST_CASE_EF = [
    pytest.param(120.0, 60.0, 50.0, id="half"),
    pytest.param(100.0, 35.0, 65.0, id="normal"),
    pytest.param(200.0, 150.0, 25.0, id="reduced"),
    pytest.param(80.0, 80.0, 0.0, id="zero"),
]


@pytest.mark.parametrize("edv,esv,ef", TEST_CASE_EF)
def test_ejection_fraction(edv: float, esv: float, ef: float) -> None:
    assert ejection_fraction(edv, esv) == pytest.approx(ef)


def test_ejection_fraction_rejects_zero_edv() -> None:
    with pytest.raises(ValueError, match="EDV"):
        ejection_fraction(0.0, 0.0)


def test_ef_of_scaled_pair_is_known() -> None:
    # ED: a=80, b=30; ES: a=64, b=24 (every length x 0.8): ESV/EDV = 0.512, EF = 48.8 %
    ed = half_ellipse(256, 256, base_row=220.0, col=128.0, length=80.0, radius=30.0)
    es = half_ellipse(256, 256, base_row=220.0, col=128.0, length=64.0, radius=24.0)
    for method in ("discs", "area-length"):
        ef = ejection_fraction(lv_volume(ed, method=method).value, lv_volume(es, method=method).value)
        assert ef == pytest.approx(48.8, abs=1.5), method


def test_la_label_locates_the_base() -> None:
    # LV half ellipse, LA below the base, myocardium ring: the LA rule picks the flat interface
    lv = half_ellipse(256, 256, base_row=180.0, col=128.0, length=90.0, radius=35.0)
    labels = lv.copy()
    yy, xx = np.mgrid[:256, :256]
    la = ((yy - 181.0) / 40.0) ** 2 + ((xx - 128.0) / 38.0) ** 2 <= 1  # flat top against the LV base
    labels[la & (labels == 0) & (yy > 180)] = 3
    myo = ellipse(256, 256, (180.0, 128.0), (100.0, 45.0)).astype(bool) & (yy <= 180) & (labels == 0)
    labels[myo] = 2
    g = lv_geometry(labels)
    assert g.base_rule == "la"
    assert g.base[:, 0] == pytest.approx([180.0, 180.0], abs=1.5)
    assert abs(g.base[0, 1] - g.base[1, 1]) >= 50.0
    assert g.length == pytest.approx(90.0, abs=1.5)


def test_empty_mask_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        lv_geometry(np.zeros((32, 32), dtype=int))


def test_camus_official_variant() -> None:
    sp = (0.3, 0.3)
    a4_ed = half_ellipse(300, 256, 80.0, 38.0, 70.0, 22.0, sp)
    a4_es = half_ellipse(300, 256, 80.0, 38.0, 58.0, 16.0, sp)
    a2_ed = half_ellipse(300, 256, 80.0, 38.0, 70.0, 20.0, sp)
    a2_es = half_ellipse(300, 256, 80.0, 38.0, 58.0, 14.0, sp)
    d, step = camus_diameters(a4_ed, sp)
    assert d.shape == (20,)
    assert step == pytest.approx(70.0 / 20, abs=0.05)
    assert d[1] == pytest.approx(44.0, abs=1.0)  # level 0.05 of a half ellipse: nearly the full width 2 b
    res = camus_biplane(a4_ed, a4_es, a2_ed, a2_es, sp, sp)
    assert res.unit == "mL"
    assert float(res.edv).is_integer() and float(res.esv).is_integer() and float(res.ef).is_integer()
    # left-end discs over-estimate a half ellipsoid by ~4 %; ESV uses the ED disc height (the shared step)
    assert res.edv == pytest.approx(2 / 3 * math.pi * 70 * 22 * 20 / 1000, rel=0.06)
    esv_shared = 2 / 3 * math.pi * 58 * 16 * 14 / 1000 * (70 / 58)
    assert res.esv == pytest.approx(esv_shared, rel=0.08)
    assert res.ef == round(100 * (res.edv - res.esv) / res.edv)
    textbook = lv_volume(a4_es, sp, method="biplane", labels_a2c=a2_es, spacing_a2c=sp).value
    assert res.esv > textbook  # the quirk inflates ESV


def test_method_enum() -> None:
    assert Method("camus").needs_two_views and not Method("discs").needs_two_views


def test_narrow_la_still_gives_the_whole_base() -> None:
    # an LA only 30 px wide under a 70 px base: the base is the whole flat LV side, not just the LA contact
    labels = half_ellipse(256, 256, base_row=180.0, col=128.0, length=90.0, radius=35.0)
    yy, xx = np.mgrid[:256, :256]
    labels[(((yy - 196.0) / 16.0) ** 2 + ((xx - 128.0) / 15.0) ** 2 <= 1) & (yy > 180)] = 3
    g = lv_geometry(labels)
    assert g.base_rule == "la"
    assert abs(g.base[0, 1] - g.base[1, 1]) >= 65.0
    assert g.base_mid == pytest.approx([180.5, 128.0], abs=1.0)
