"""OPE metrics against hand-worked boxes, the pytracking rules of vision_shared.md Sec. 7.1,
and the got10k toolkit (a peer implementation) on random boxes."""

from __future__ import annotations

import types

import numpy as np
import pytest

from repro.errors import ParameterError
from repro.tracking import metrics
from repro.tracking.data import TrackingSequence


def test_iou_of_hand_worked_boxes():
    # 10x10 boxes overlapping in a 5x10 strip: 50 / (100 + 100 - 50) = 1/3
    assert metrics.iou([[0, 0, 10, 10]], [[5, 0, 10, 10]])[0] == pytest.approx(1 / 3)
    # nested: 4x4 inside 8x8 -> 16 / 64
    assert metrics.iou([[2, 2, 4, 4]], [[0, 0, 8, 8]])[0] == pytest.approx(0.25)
    # disjoint, and an empty union
    assert metrics.iou([[0, 0, 2, 2]], [[5, 5, 2, 2]])[0] == 0.0
    assert metrics.iou([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0] == 0.0


def test_center_error_uses_pixel_centres():
    # centres: (0 + 4.5, 0 + 4.5) and (3 + 4.5, 4 + 4.5) -> distance 5
    assert metrics.center_error([[0, 0, 10, 10]], [[3, 4, 10, 10]])[0] == pytest.approx(5.0)
    # centres (4.5, 4.5) and (3 + 1, 4 + 1.5); the offset (0.5, -1) divided by the ground
    # truth's (w, h) = (3, 4) is (1/6, -1/4)
    got = metrics.normalized_center_error([[0, 0, 10, 10]], [[3, 4, 3, 4]])[0]
    assert got == pytest.approx(np.sqrt(1 / 36 + 1 / 16))


def test_perfect_tracker_scores_twenty_of_twenty_one():
    gt = np.array([[10, 10, 20, 20]] * 30, dtype=float)
    c = metrics.sequence_curves(gt, gt)
    assert c.auc == pytest.approx(20 / 21)
    assert c.precision[20] == 1.0 and c.norm_precision[20] == 1.0


def test_iou_exactly_half_fails_the_half_threshold():
    gt = np.array([[0, 0, 10, 10]] * 4, dtype=float)
    pred = np.array([[0, 0, 10, 10]] + [[0, 0, 10, 5]] * 3, dtype=float)  # IoU 0.5
    c = metrics.sequence_curves(pred, gt)
    assert c.success[10] == pytest.approx(1 / 4)  # only frame 0 (> 0.5 is strict)
    assert c.success[9] == 1.0  # all frames have IoU > 0.45


def test_shift_of_exactly_twenty_pixels_counts_for_precision():
    gt = np.array([[30, 30, 10, 10]] * 5, dtype=float)
    pred = gt + np.array([20, 0, 0, 0])
    c = metrics.sequence_curves(pred, gt)
    assert c.precision[20] == 1.0 and c.precision[19] == pytest.approx(1 / 5)


def test_invisible_lasot_frames_are_failures_whatever_the_prediction():
    n = 8
    gt = np.array([[10, 10, 20, 20]] * n, dtype=float)
    visible = np.zeros(n, dtype=bool)
    visible[0] = True
    c = metrics.sequence_curves(gt, gt, visible)  # a perfect prediction
    assert np.allclose(c.success[:-1], 1 / n)
    assert np.allclose(c.precision, 1 / n) and np.allclose(c.norm_precision, 1 / n)


def test_invalid_frames_pass_normalised_precision_outside_lasot():
    # pytracking's quirk: an invalid ground truth gets the normalised error -1
    gt = np.array([[10, 10, 20, 20], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=float)
    pred = np.array([[10, 10, 20, 20]] * 3, dtype=float)
    other = metrics.sequence_curves(pred, gt, dataset="got10k")
    lasot = metrics.sequence_curves(pred, gt, dataset="lasot")
    assert other.norm_precision[0] == 1.0 and other.precision[50] == pytest.approx(1 / 3)
    assert lasot.norm_precision[50] == pytest.approx(1 / 3)


def test_frame_zero_is_overwritten_and_zero_boxes_take_the_previous_one():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
    pred = np.array([[50, 50, 1, 1], [0, 0, 10, 10], [7, 7, 0, 0]], dtype=float)
    c = metrics.sequence_curves(pred, gt)
    assert c.auc == pytest.approx(20 / 21)  # frame 0 from gt, frame 2 copies frame 1


def test_length_rules_per_dataset():
    gt = np.array([[0, 0, 10, 10]] * 4, dtype=float)
    with pytest.raises(ParameterError, match="LaSOT needs one box per frame"):
        metrics.sequence_curves(gt[:3], gt)
    padded = metrics.sequence_curves(gt[:3], gt, dataset="trackingnet")
    assert padded.success[0] == pytest.approx(3 / 4)
    longer = metrics.sequence_curves(np.concatenate([gt, gt]), gt)
    assert longer.auc == pytest.approx(20 / 21)


def test_bad_boxes_are_refused():
    gt = np.array([[0, 0, 10, 10]] * 2, dtype=float)
    with pytest.raises(ParameterError, match="NaN or negative"):
        metrics.sequence_curves(np.array([[0, 0, 10, 10], [0, 0, -1, 3]]), gt)
    with pytest.raises(ParameterError, match=r"\(N, 4\)"):
        metrics.iou(np.zeros((3, 3)), np.zeros((3, 3)))


def test_ope_averages_sequences_not_frames_and_splits_by_attribute():
    gt_long = np.array([[0, 0, 10, 10]] * 9, dtype=float)
    gt_short = np.array([[0, 0, 10, 10]] * 3, dtype=float)
    seqs = [TrackingSequence("a", [None] * 9, gt_long, None, {"occ": True}),
            TrackingSequence("b", [None] * 3, gt_short, None, {"occ": False})]
    away = np.array([[100, 100, 10, 10]] * 3, dtype=float)
    result = metrics.ope({"a": gt_long, "b": away}, seqs)
    # sequence a: perfect (20/21); sequence b: only frame 0 -> (1/3) * 20/21
    assert result.auc == pytest.approx((20 / 21 + 20 / 21 / 3) / 2)
    assert result.per_attribute(["occ"])["occ"] == pytest.approx(20 / 21)
    with pytest.raises(ParameterError, match="no predictions"):
        metrics.ope({"a": gt_long}, seqs)


def test_got10k_ao_excludes_frame_zero_and_covered_frames():
    gt = np.array([[0, 0, 10, 10]] * 4, dtype=float)
    pred = np.array([[50, 50, 10, 10], [0, 0, 10, 10], [0, 0, 10, 5], [9, 9, 1, 1]],
                    dtype=float)
    out = metrics.got10k_ao_sr([pred], [gt], covers=[np.array([8, 8, 8, 0])])
    assert out["AO"] == pytest.approx((1.0 + 0.5) / 2)
    assert out["SR0.5"] == pytest.approx(0.5)


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 80, (n, 2))
    wh = rng.uniform(1, 40, (n, 2))
    return np.concatenate([xy, wh], 1)


def test_iou_and_center_error_agree_with_got10k():
    got10k_metrics = pytest.importorskip("got10k.utils.metrics",
                                         reason="the got10k toolkit does not import")
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 5000), _random_boxes(rng, 5000)
    b[:2500] = a[:2500] + rng.normal(0, 3, (2500, 4)).clip(-0.9, None)  # many overlaps
    ref_iou = got10k_metrics.rect_iou(a.copy(), b.copy())
    assert np.abs(metrics.iou(a, b) - ref_iou).max() < 1e-9
    ref_ce = got10k_metrics.center_error(a, b)
    assert np.abs(metrics.center_error(a, b) - ref_ce).max() < 1e-9


def test_success_and_precision_curves_agree_with_got10k_otb():
    try:
        from got10k.experiments.otb import ExperimentOTB
        from got10k.utils.metrics import center_error, rect_iou
    except ImportError as err:  # e.g. its dependency `six` is missing
        pytest.skip(f"got10k.experiments does not import: {err}")
    rng = np.random.default_rng(1)
    ours, theirs = [], []
    fake_self = types.SimpleNamespace(nbins_iou=21, nbins_ce=51)
    for _ in range(20):
        gt = _random_boxes(rng, 60)
        pred = gt + rng.normal(0, 6, gt.shape)
        pred[:, 2:] = np.abs(pred[:, 2:]) + 0.5
        c = metrics.sequence_curves(pred, gt)
        ref = pred.copy()
        ref[0] = gt[0]  # got10k's report() overwrites frame 0 with the annotation too
        succ, prec = ExperimentOTB._calc_curves(fake_self, rect_iou(ref, gt.copy()),
                                                center_error(ref, gt))
        assert np.allclose(c.success, succ) and np.allclose(c.precision, prec)
        ours.append(c.auc)
        theirs.append(np.mean(succ))
    assert np.mean(ours) == pytest.approx(np.mean(theirs), abs=1e-12)


def test_jump_rate_counts_large_centre_moves():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 10, 10], [30, 0, 10, 10], [31, 0, 10, 10]], float)
    # moves of 1, 29 and 1 px against a threshold of 0.5 * 10 = 5 px
    assert metrics.jump_rate(boxes) == pytest.approx(1 / 3)
    assert metrics.success_curve([1.0, 0.5])[10] == 0.5  # IoU 0.5 is not > 0.5


def test_plot_ope_draws_one_success_and_one_precision_curve_per_tracker():
    import matplotlib

    matplotlib.use("Agg")
    gt = np.array([[0, 0, 10, 10]] * 4, dtype=float)
    seqs = [TrackingSequence("a", [None] * 4, gt, None, {})]
    results = {"perfect": metrics.ope({"a": gt}, seqs),
               "lost": metrics.ope({"a": gt + [50, 50, 0, 0]}, seqs)}
    fig = metrics.plot_ope(results)
    success, precision = fig.axes
    assert [line.get_label() for line in success.lines] == [
        f"perfect [{results['perfect'].auc:.3f}]", f"lost [{results['lost'].auc:.3f}]"]
    assert len(precision.lines) == 2
    np.testing.assert_array_equal(success.lines[0].get_xdata(), metrics.IOU_THRESHOLDS)
    assert success.get_xlabel() == "IoU threshold" and "px" in precision.get_xlabel()
