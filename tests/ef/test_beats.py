"""Beat detection on synthetic LV area curves and beating-LV clips (compute_ef end to end on masks)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gdkvm.ef import NoBeatFoundError, compute_ef, detect_beats, format_table
from gdkvm.ef.beats import PARTIAL, TINY
from tests.ef.shapes import beating_clip


def area_curve(fps: float, rates: list[float], *, start_phase: float = 0.5, noise: float = 0.0, seed: int = 0):
    """[T] area of a beating LV (1.0 at ED, 0.45 at ES) and the true ES frame times; one entry of ``rates`` per
    beat (bpm). Systole takes 35 % of each period, relaxation the next 35 %."""
    periods = 60.0 / np.asarray(rates, dtype=np.float64)
    t0 = -start_phase * periods[0]
    starts = t0 + np.concatenate([[0.0], np.cumsum(periods)])
    t = np.arange(int(starts[-1] * fps)) / fps
    c = np.zeros_like(t)
    for k, p in enumerate(periods):
        ph = (t - starts[k]) / p
        sel = (ph >= 0) & (ph < 1)
        up = np.clip(np.where(ph < 0.35, ph / 0.35, 1 - (ph - 0.35) / 0.35), 0, 1)
        c[sel] = (0.5 - 0.5 * np.cos(np.pi * up))[sel]
    es_times = starts[:-1] + 0.35 * periods
    rng = np.random.default_rng(seed)
    return 1000.0 * (1.0 - 0.55 * c) + noise * 1000.0 * rng.normal(size=len(t)), es_times[es_times >= 0] * fps


# (fps, per-beat heart rates, noise as a fraction of EDA, tolerance in frames)
TEST_CASE_CURVES = [
    pytest.param(50.0, [72.0] * 6, 0.0, 1, id="clean_72bpm"),
    pytest.param(30.0, [120.0] * 8, 0.0, 1, id="clean_120bpm_30fps"),
    pytest.param(50.0, [72.0] * 6, 0.03, 3, id="noisy"),
    pytest.param(50.0, [60.0, 110.0, 75.0, 95.0, 65.0, 130.0, 80.0], 0.01, 2, id="irregular"),
]


@pytest.mark.parametrize("fps,rates,noise,tol", TEST_CASE_CURVES)
def test_detects_every_systole(fps: float, rates: list[float], noise: float, tol: int) -> None:
    area, es_true = area_curve(fps, rates, noise=noise)
    beats = detect_beats(area, fps)
    es_true = es_true[(es_true > 2) & (es_true < len(area) - 3)]
    assert len(beats) == len(es_true)
    assert np.abs(np.array([b.es for b in beats]) - es_true).max() <= tol + 0.5
    for b in beats:
        assert b.ed < b.es
        assert b.reason is None
        assert area[b.ed] - area[b.es] > 0.4 * 1000.0


def test_single_beat() -> None:
    area, es_true = area_curve(50.0, [70.0, 70.0])  # 1.5 periods: one complete systole
    beats = detect_beats(area, 50.0)
    assert len(beats) == 1 and abs(beats[0].es - es_true[0]) <= 1.5


def test_partial_first_beat_is_rejected() -> None:
    area, _ = area_curve(50.0, [72.0] * 3, start_phase=0.1)  # the clip starts inside systole
    beats = detect_beats(area, 50.0)
    assert beats[0].reason == PARTIAL
    assert all(b.reason is None for b in beats[1:])


def test_diastolic_notch_is_a_tiny_beat() -> None:
    area, _ = area_curve(50.0, [60.0] * 4)
    t = np.arange(len(area))
    for es in detect_beats(area, 50.0):  # a dip of 20 % of the range 0.5 s after each ES
        area = area - 110.0 * np.exp(-0.5 * ((t - es.es - 25) / 2.5) ** 2)
    beats = detect_beats(area, 50.0)
    tiny = [b for b in beats if b.reason == TINY]
    assert len(tiny) >= 2
    assert len([b for b in beats if b.reason is None]) == 3  # ES at frames 42.5, 92.5, 142.5


TEST_CASE_NO_BEAT = [
    pytest.param(np.full(100, 500.0), "flat", id="flat"),
    pytest.param(500.0 + np.random.default_rng(0).normal(0, 5, 100), "flat", id="flat_noisy"),
    pytest.param(np.linspace(1000, 450, 15), "shorter than a beat", id="half_beat_only"),
    pytest.param(np.zeros(50), "empty", id="no_lv"),
    pytest.param(np.array([3.0, 2.0]), "only 2 frame", id="two_frames"),
]


@pytest.mark.parametrize("area,message", TEST_CASE_NO_BEAT)
def test_no_beat_found(area: np.ndarray, message: str) -> None:
    with pytest.raises(NoBeatFoundError, match=f"no beat found.*{message}"):
        detect_beats(area, 50.0)


@pytest.mark.parametrize("fps", [None, 0.0, float("nan")])
def test_unknown_frame_rate(fps) -> None:
    with pytest.raises(ValueError, match="frame rate"):
        detect_beats(np.ones(20), fps)


def test_compute_ef_on_beating_clip() -> None:
    masks, contraction = beating_clip(50.0, 3.0, 75.0, noise=0.1, seed=1)
    report = compute_ef(masks, fps=50.0, spacing=(0.4, 0.4))
    assert report.unit == "mL" and report.views == "A4C" and report.beat_source == "detected"
    # ED: L=40, r=16 px; ES: L=32, r=11 px; V ~ L r^2 -> EF = 1 - (32*121)/(40*256) = 62.2 %
    expected = 100.0 * (1.0 - (32 * 121) / (40 * 256))
    assert report.summary.n_accepted >= 3
    assert report.summary.mean == pytest.approx(expected, abs=3.0)
    assert report.summary.sd is not None and report.summary.sd < 2.0
    for b in report.beats:
        if b.accepted:
            assert contraction[b.ed] < 0.1 and contraction[b.es] > 0.9
            assert b.edv == pytest.approx(2 / 3 * math.pi * 40 * 16**2 * 0.4**3 / 1000, rel=0.08)
    text = format_table(report)
    assert "EF mean" in text and "EDV [mL]" in text
    assert '"n_accepted"' in report.to_json()


def test_compute_ef_biplane_pairs_beats_and_half_beat_path() -> None:
    a4c, _ = beating_clip(50.0, 3.0, 75.0)
    a2c, _ = beating_clip(40.0, 3.0, 65.0, radius=(14.0, 10.0), start_phase=0.6)
    report = compute_ef(a4c, fps=50.0, masks_a2c=a2c, fps_a2c=40.0)
    assert report.views == "A4C+A2C" and report.method == "biplane"
    assert report.unit == "px^3 (relative)" and report.notes
    paired = [b for b in report.beats if b.ed_a2c is not None]
    assert paired and all(b.ed_a2c < b.es_a2c for b in paired)
    expected = 100.0 * (1.0 - (32 * 11 * 10) / (40 * 16 * 14))
    assert report.summary.median == pytest.approx(expected, abs=3.5)
    # the explicit ED..ES path (a CAMUS half sequence): no frame rate needed
    half = compute_ef(a4c[10:40], ed_es=(0, 29), method="area-length")
    assert half.beat_source == "given" and len(half.beats) == 1 and half.fps is None
    with pytest.raises(ValueError, match="A2C"):
        compute_ef(a4c, fps=50.0, method="camus")


def test_rejections_carry_reasons() -> None:
    masks, _ = beating_clip(50.0, 3.0, 75.0)
    report = compute_ef(masks, fps=50.0, max_ef=30.0)
    assert report.summary.n_accepted == 0 and report.summary.mean is None
    assert any("implausible EF" in (b.reason or "") for b in report.beats)
    assert "no accepted beat" in format_table(report)
    cut = masks[:, :, 50:]  # the image border cuts the LV (centred at column 56)
    report = compute_ef(cut, fps=50.0)
    assert report.summary.n_accepted == 0
    assert all("border" in (b.reason or "") for b in report.beats if b.reason != PARTIAL)
    empty = masks.copy()
    empty[20:] = 0
    with pytest.raises(NoBeatFoundError):
        compute_ef(empty, fps=50.0)


@pytest.mark.parametrize("seed,jitter", [pytest.param(1, False, id="clean"), pytest.param(2, True, id="jittered")])
def test_beats_on_generated_clip(seed: int, jitter: bool) -> None:
    """Full-cycle clips of the synthetic generator: ED/ES frames and EF against its truth."""
    from scipy import ndimage

    from gdkvm.data.synthetic import make_clip

    _, masks, info = make_clip(seed, frames=150, fps=50.0, size=(160, 160))
    masks = masks.astype(np.int64)
    if jitter:  # segmentation-like noise: the LV border moves by a pixel at random frames
        rng = np.random.default_rng(seed)
        for t in range(len(masks)):
            lv = masks[t] == 1
            step = rng.choice([-1, 0, 1])
            grown = ndimage.binary_dilation(lv) if step > 0 else ndimage.binary_erosion(lv) if step < 0 else lv
            masks[t][(masks[t] == 1) & ~grown] = 2
            masks[t][grown & (masks[t] != 1)] = 1
    report = compute_ef(masks, spacing=info["spacing"], fps=50.0)
    ok = [b for b in report.beats if b.accepted]
    assert len(ok) >= 2
    for b in ok:
        assert min(abs(b.es - e) for e in info["es_frames"]) <= (4 if jitter else 1)
        assert min(abs(b.ed - e) for e in info["ed_frames"]) <= (4 if jitter else 1)
    assert report.summary.mean == pytest.approx(info["ef"], abs=3.0)


def test_segmentation_dropouts_are_bridged() -> None:
    area, es_true = area_curve(50.0, [72.0] * 5)
    clean = detect_beats(area, 50.0)
    holes = area.copy()
    holes[[b.es for b in clean[:2]]] = 0.0  # the model lost the LV exactly at two ES frames
    holes[[5, 6, 60]] = 3.0
    beats = detect_beats(holes, 50.0)
    assert len(beats) == len(clean)
    for b, c in zip(beats, clean):
        assert holes[b.es] > 0.25 * np.median(area) and holes[b.ed] > 0.25 * np.median(area)
        assert abs(b.es - c.es) <= 1 and abs(b.ed - c.ed) <= 1
