"""Segmentation scores follow the BraTS conventions and agree with medpy where definitions match."""

import numpy as np
import pytest
from medpy.metric import binary as medpy
from scipy import ndimage

from fuse4seg_jax.errors import DataError
from fuse4seg_jax.metrics import (
    HD95_ONE_EMPTY_MM,
    REGIONS,
    hd95_mm,
    segmentation_row,
    segmentation_scores,
    surface_distances_mm,
)

SPACING = (0.8, 1.0, 2.5)  # anisotropic, in mm


def _random_mask(seed, shape=(24, 20, 14)):
    noise = np.random.default_rng(seed).normal(size=shape)
    return ndimage.gaussian_filter(noise, 1.5) > 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dice_and_surface_distances_match_medpy(seed):
    pred, truth = _random_mask(seed), _random_mask(seed + 100)
    labels_pred, labels_truth = pred.astype(np.int32) * 2, truth.astype(np.int32) * 2
    scores = segmentation_scores(labels_pred, labels_truth, SPACING)["ED"]
    assert scores["dice"] == pytest.approx(medpy.dc(pred, truth), abs=1e-12)
    assert scores["sensitivity"] == pytest.approx(medpy.sensitivity(pred, truth), abs=1e-12)
    assert scores["specificity"] == pytest.approx(medpy.specificity(pred, truth), abs=1e-12)
    # Same surfaces and distances as medpy: its pooled 95th percentile and its Hausdorff
    # distance are reproduced exactly (to float rounding) from our two directed sets.
    p_to_t, t_to_p = surface_distances_mm(pred, truth, SPACING)
    pooled = np.percentile(np.hstack([p_to_t, t_to_p]), 95)
    assert pooled == pytest.approx(medpy.hd95(pred, truth, SPACING), rel=1e-12)
    assert max(p_to_t.max(), t_to_p.max()) == pytest.approx(medpy.hd(pred, truth, SPACING))
    # Ours is the max of the directed percentiles (REFERENCE), never below medpy's pooled one.
    ours = max(np.percentile(p_to_t, 95), np.percentile(t_to_p, 95))
    assert scores["hd95_mm"] == pytest.approx(ours, rel=1e-12)
    assert scores["hd95_mm"] >= medpy.hd95(pred, truth, SPACING) - 1e-9


def test_hd95_equals_medpy_when_directions_are_symmetric():
    # A cube and the same cube shifted: both directed distance sets have the same distribution,
    # so max-of-directed and pooled percentiles coincide.
    truth = np.zeros((30, 30, 20), bool)
    truth[8:18, 8:18, 5:12] = True
    pred = np.roll(truth, 3, axis=2)
    assert hd95_mm(pred, truth, SPACING) == pytest.approx(medpy.hd95(pred, truth, SPACING))
    assert hd95_mm(pred, truth, SPACING) == pytest.approx(3 * 2.5)


def test_small_objects_far_apart_in_a_large_volume_match_medpy():
    # Exercises the bounding-box crop: distances must be those of the whole volume.
    truth = np.zeros((60, 50, 40), bool)
    pred = np.zeros_like(truth)
    truth[2:5, 3:6, 1:4] = True
    pred[50:59, 40:49, 30:40] = True
    p_to_t, t_to_p = surface_distances_mm(pred, truth, SPACING)
    pooled = np.percentile(np.hstack([p_to_t, t_to_p]), 95)
    assert pooled == pytest.approx(medpy.hd95(pred, truth, SPACING), rel=1e-12)


def _volume(*voxels, label=3):
    labels = np.zeros((10, 10, 6), np.int32)
    for v in voxels:
        labels[v] = label
    return labels


def test_empty_prediction_scores_zero_dice_and_the_diagonal():
    scores = segmentation_scores(_volume(), _volume((2, 2, 2)))["ET"]
    assert (scores["dice"], scores["iou"], scores["sensitivity"]) == (0.0, 0.0, 0.0)
    assert scores["hd95_mm"] == HD95_ONE_EMPTY_MM == 373.13


def test_empty_truth_scores_zero_dice_and_the_diagonal():
    scores = segmentation_scores(_volume((2, 2, 2)), _volume())["ET"]
    assert (scores["dice"], scores["iou"], scores["hd95_mm"]) == (0.0, 0.0, 373.13)
    assert scores["sensitivity"] == 1.0  # nothing to find, nothing missed
    assert scores["specificity"] == pytest.approx(1 - 1 / 600)


def test_both_empty_is_a_perfect_score():
    scores = segmentation_scores(_volume(), _volume())
    for region in REGIONS:
        assert scores[region] == {
            "dice": 1.0,
            "iou": 1.0,
            "sensitivity": 1.0,
            "specificity": 1.0,
            "hd95_mm": 0.0,
        }


def test_single_voxel_exact_and_one_slice_off():
    assert segmentation_scores(_volume((4, 4, 3)), _volume((4, 4, 3)), SPACING)["ET"]["dice"] == 1
    off = segmentation_scores(_volume((4, 4, 3)), _volume((4, 4, 4)), SPACING)["ET"]
    assert off["dice"] == 0.0
    assert off["hd95_mm"] == pytest.approx(2.5)  # one voxel along the 2.5 mm axis


def test_official_regions_merge_labels():
    truth = _volume((1, 1, 1), (2, 2, 2), label=3)
    truth[5, 5, 5] = 2
    pred = _volume((1, 1, 1), (2, 2, 2), label=1)  # ET predicted as NCR
    pred[5, 5, 5] = 2
    scores = segmentation_scores(pred, truth)
    assert scores["ET"]["dice"] == 0.0 and scores["NCR"]["dice"] == 0.0
    assert scores["TC"]["dice"] == 1.0 and scores["WT"]["dice"] == 1.0
    assert scores["ED"]["dice"] == 1.0
    assert set(scores) == {"NCR", "ED", "ET", "TC", "WT"}
    # the papers' "Average": each case's mean over the three label regions, not over TC / WT
    row = segmentation_row(scores)
    assert row["Dice mean"] == pytest.approx(1.0 / 3.0)
    assert list(row)[:7] == [f"Dice {r}" for r in ("NCR", "ED", "ET", "TC", "WT", "mean")] + ["IoU NCR"]


def test_bad_arrays_raise_data_errors():
    with pytest.raises(DataError, match="shape"):
        segmentation_scores(np.zeros((4, 4, 4), np.int32), np.zeros((4, 4, 5), np.int32))
    with pytest.raises(DataError, match="integer labels"):
        segmentation_scores(np.zeros((4, 4, 4)), np.zeros((4, 4, 4), np.int32))
    with pytest.raises(DataError, match="map BraTS ET label 4"):
        segmentation_scores(np.full((4, 4, 4), 4, np.int32), np.zeros((4, 4, 4), np.int32))
