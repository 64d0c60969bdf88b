"""Hand-computed cases for gdkvm.metrics.segmentation (squares of known overlap, spacing, empty masks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gdkvm.metrics.segmentation import FrameScorer, Phase, SegmentationMetrics, summarize

H = W = 12


def square(r0: int, c0: int, size: int = 4, label: int = 1, base: torch.Tensor | None = None) -> torch.Tensor:
    """[H, W] int64 label map with a size x size square of `label` at (r0, c0)."""
    out = torch.zeros(H, W, dtype=torch.int64) if base is None else base.clone()
    out[r0 : r0 + size, c0 : c0 + size] = label
    return out


EMPTY = torch.zeros(H, W, dtype=torch.int64)
NAN = float("nan")

# Each case: [pred [H, W], target [H, W], spacing (row, col) mm or NaN, expected {dice, iou, hd95, assd}]
# A 4x4 square moved by 2 columns overlaps 4x2 = 8 px: Dice 2*8/32 = 0.5, IoU 8/24 = 1/3.
TEST_CASE_SHIFT_2 = [square(2, 4), square(2, 2), (NAN, NAN), {"dice": 0.5, "iou": 1 / 3}]
# Moved by 1 column: 12 edge pixels each way, 6 at distance 0 and 6 at distance 1 -> ASSD 0.5, HD95 1 (pixels).
TEST_CASE_SHIFT_1_PX = [square(2, 3), square(2, 2), (NAN, NAN), {"dice": 0.75, "hd95": 1.0, "assd": 0.5}]
# The same at 2 mm per pixel: distances double.
TEST_CASE_SHIFT_1_MM = [square(2, 3), square(2, 2), (2.0, 2.0), {"dice": 0.75, "hd95": 2.0, "assd": 1.0}]
# Moved by 1 row with anisotropic spacing (0.5 mm rows, 3 mm columns): only row steps count, 0.5 mm each.
TEST_CASE_SHIFT_ROW_ANISO = [square(3, 2), square(2, 2), (0.5, 3.0), {"dice": 0.75, "hd95": 0.5, "assd": 0.25}]
# Identical masks.
TEST_CASE_SAME = [square(2, 2), square(2, 2), (1.0, 1.0), {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}]
# Empty prediction: Dice/IoU 0, distances undefined (NaN, never 0 or inf).
TEST_CASE_EMPTY_PRED = [EMPTY, square(2, 2), (1.0, 1.0), {"dice": 0.0, "iou": 0.0, "hd95": NAN, "assd": NAN}]
# Empty ground truth: everything NaN (MONAI ignore_empty).
TEST_CASE_EMPTY_GT = [square(2, 2), EMPTY, (1.0, 1.0), {"dice": NAN, "iou": NAN, "hd95": NAN, "assd": NAN}]
TEST_CASE_BOTH_EMPTY = [EMPTY, EMPTY, (NAN, NAN), {"dice": NAN, "iou": NAN, "hd95": NAN, "assd": NAN}]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-6)


@pytest.mark.parametrize(
    "pred, target, spacing, expected",
    [
        pytest.param(*TEST_CASE_SHIFT_2, id="shift2"),
        pytest.param(*TEST_CASE_SHIFT_1_PX, id="shift1-px"),
        pytest.param(*TEST_CASE_SHIFT_1_MM, id="shift1-2mm"),
        pytest.param(*TEST_CASE_SHIFT_ROW_ANISO, id="row-shift-anisotropic"),
        pytest.param(*TEST_CASE_SAME, id="identical"),
        pytest.param(*TEST_CASE_EMPTY_PRED, id="empty-pred"),
        pytest.param(*TEST_CASE_EMPTY_GT, id="empty-gt"),
        pytest.param(*TEST_CASE_BOTH_EMPTY, id="both-empty"),
    ],
)
def test_frame_scorer_values(pred, target, spacing, expected):
    scores = FrameScorer(num_classes=1)(pred[None], target[None], torch.tensor([spacing]))
    for key, value in expected.items():
        assert _same(float(scores[key][0, 0]), value), (key, scores[key], value)
    assert bool(scores["in_mm"][0]) == (not math.isnan(spacing[0]))


def test_frame_scorer_multiclass_and_batch():
    # class 1: identical 4x4 squares; class 2: pred square moved 2 columns -> Dice 0.5 (separate places, no overlap).
    target = square(6, 2, label=2, base=square(0, 0, label=1))
    pred = square(6, 4, label=2, base=square(0, 0, label=1))
    scores = FrameScorer(num_classes=2)(torch.stack([pred, target]), torch.stack([target, target]))
    np.testing.assert_allclose(scores["dice"], [[1.0, 0.5], [1.0, 1.0]])
    np.testing.assert_allclose(scores["intersection"], [[16, 8], [16, 16]])
    assert not scores["in_mm"].any()  # no spacing -> pixels


def test_frame_scorer_without_distances_and_bad_shapes():
    scores = FrameScorer(num_classes=1, distances=False)(square(2, 2)[None], square(2, 2)[None])
    assert math.isnan(scores["hd95"][0, 0]) and scores["dice"][0, 0] == 1.0
    with pytest.raises(ValueError, match="N, H, W"):
        FrameScorer(num_classes=1)(square(2, 2), square(2, 2)[None])


def _metrics_on(pairs, phases, spacing=None, class_names=("lv",)):
    m = SegmentationMetrics(class_names)
    preds = torch.stack([p for p, _ in pairs])
    targets = torch.stack([t for _, t in pairs])
    n = len(pairs)
    m(preds, targets, spacing, [f"c{i // 2}" for i in range(n)], list(range(n)), phases)
    return m


def test_pooled_versus_mean_dice_and_phases():
    # ED: identical 4x4 squares (I 16, sizes 32, Dice 1); ES: 2x2 ground truth, empty prediction (I 0, sizes 4, Dice 0).
    pairs = [(square(2, 2), square(2, 2)), (EMPTY, square(2, 2, size=2))]
    summary = _metrics_on(pairs, [Phase.ED, "ES"]).aggregate()
    assert summary["dice"] == pytest.approx(0.5)
    assert summary["dice_pooled"] == pytest.approx(32 / 36)
    assert summary["iou_pooled"] == pytest.approx(16 / 20)
    assert summary["dice_ED"] == 1.0 and summary["dice_ES"] == 0.0 and summary["dice_EDES"] == pytest.approx(0.5)
    assert summary["n_empty_pred"] == 1 and summary["n_empty_pred_ED"] == 0 and summary["n_empty_pred_ES"] == 1
    assert summary["n_distance_undefined"] == 1
    assert summary["hd95_px"] == 0.0  # the mean covers the defined image only, the other one is counted
    assert "hd95_mm" not in summary


def test_units_are_never_mixed():
    pairs = [(square(2, 3), square(2, 2)), (square(2, 3), square(2, 2))]
    spacing = torch.tensor([[2.0, 2.0], [NAN, NAN]])
    summary = _metrics_on(pairs, ["ED", "ES"], spacing).aggregate()
    assert summary["hd95_mm"] == pytest.approx(2.0) and summary["hd95_px"] == pytest.approx(1.0)
    assert summary["assd_mm_ED"] == pytest.approx(1.0) and summary["assd_px_ES"] == pytest.approx(0.5)
    assert "hd95_px_ED" not in summary


def test_empty_ground_truth_counts_and_rows():
    m = _metrics_on([(square(2, 2), EMPTY), (EMPTY, EMPTY)], ["other", "other"])
    summary = m.aggregate()
    assert math.isnan(summary["dice"]) and summary["n_empty_gt"] == 1 and summary["n_both_empty"] == 1
    assert math.isnan(summary["dice_pooled"]) is False and summary["dice_pooled"] == 0.0  # 0 / 16
    assert "dice_ED" not in summary and "dice_EDES" not in summary
    rows = m.rows()
    assert [r["phase"] for r in rows] == ["other", "other"] and rows[0]["pred_pixels"] == 16
    m.reset()
    assert m.rows() == [] and m.aggregate() == {}


def test_per_class_keys_with_several_classes():
    target = square(6, 2, label=2, base=square(0, 0, label=1))
    pred = square(6, 4, label=2, base=square(0, 0, label=1))
    summary = _metrics_on([(pred, target)], ["ED"], class_names=("lv", "myo")).aggregate()
    assert summary["lv/dice"] == 1.0 and summary["myo/dice"] == pytest.approx(0.5)
    assert summary["dice"] == pytest.approx(0.75)
    assert summary["dice_pooled"] == pytest.approx(2 * 24 / 64)
    assert summary["n_images"] == 2 and summary["lv/n_images_ED"] == 1


def test_summarize_without_rows_and_length_check():
    assert summarize([], ["lv"]) == {}
    with pytest.raises(ValueError, match="case_ids"):
        SegmentationMetrics(["lv"])(square(2, 2)[None], square(2, 2)[None], None, ["a", "b"], [0], ["ED"])


def _gather_worker(rank: int, init_file: str, out_file: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    m = SegmentationMetrics(["lv"])
    # rank 0 scores cases a, b; rank 1 scores c and again b (a padding sampler's duplicate)
    ids = ["a", "b"] if rank == 0 else ["c", "b"]
    m(torch.stack([square(2, 2), EMPTY]), torch.stack([square(2, 2), square(2, 2)]), None, ids, [0, 0], ["ED", "ED"])
    summary = m.aggregate()
    if rank == 0:
        torch.save(summary, out_file)
    torch.distributed.destroy_process_group()


@pytest.mark.slow  # two spawned processes each import torch and MONAI
def test_rows_are_gathered_across_ranks_without_duplicates(tmp_path):
    torch.multiprocessing.spawn(_gather_worker, args=(str(tmp_path / "init"), str(tmp_path / "out.pt")), nprocs=2)
    summary = torch.load(tmp_path / "out.pt")
    assert summary["n_images"] == 3  # a, b, c (b once)
    assert summary["n_empty_pred"] == 1 and summary["dice"] == pytest.approx(2 / 3)
