"""Segmentation scores per tumour region, with the BraTS conventions (``docs/conventions.md#metrics``).

Labels are the internal ones: 0 background, 1 NCR, 2 ED, 3 ET (BraTS stores ET as 4 in 2021 and 3
in 2023; map on read). Regions are sets of labels: per label NCR, ED, ET (as Fuse4Seg reports)
and the official tumour core TC = NCR + ET and whole tumour WT = NCR + ED + ET. ET is the same set
in both groups, so it appears once.

Per region, with TP / FP / FN / TN the voxel counts of the region's masks:

- Dice = 2 TP / (2 TP + FP + FN); IoU = TP / (TP + FP + FN). Both masks empty: 1 (the region is
  correctly absent). Exactly one empty: 0.
- Sensitivity = TP / (TP + FN), 1 when the truth is empty (nothing to find, nothing missed).
  Specificity = TN / (TN + FP), 1 when the truth fills the volume.
- HD95 in mm from the voxel spacing: see :mod:`fuse4seg_jax.metrics.surface` (max of the two
  directed 95th percentiles; 0 if both empty; 373.13 if exactly one is).

Scores are computed on whole volumes, as the field evaluates: a 2-D model's slice predictions are
restacked into the full-size volume first (:func:`fuse4seg_jax.data.slicing.restack`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fuse4seg_jax.errors import DataError
from fuse4seg_jax.metrics.surface import bounding_box, hd95_mm

REGIONS: dict[str, tuple[int, ...]] = {
    "NCR": (1,),
    "ED": (2,),
    "ET": (3,),
    "TC": (1, 3),
    "WT": (1, 2, 3),
}
"""Region name -> internal labels it contains; per label NCR / ED / ET, official ET / TC / WT."""

NUM_LABELS = 4
"""Internal label values are 0 .. NUM_LABELS - 1."""


def _check_labels(name: str, labels: np.ndarray) -> np.ndarray:
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{name} must hold integer labels, got dtype {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= NUM_LABELS:
        raise DataError(
            f"{name} holds label values outside 0..{NUM_LABELS - 1} (min {low}, max {high}); "
            "map BraTS ET label 4 to 3 first"
        )
    return labels


def confusion_counts(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Voxel counts of every (predicted label, true label) pair.

    Arguments:
        pred, truth: int arrays of the same shape with values in ``0 .. NUM_LABELS - 1``.

    Returns:
        int64 array ``(NUM_LABELS, NUM_LABELS)``; entry ``[p, t]`` counts voxels predicted ``p``
        whose true label is ``t``.
    """
    joint = pred.astype(np.intp).ravel() * NUM_LABELS + truth.astype(np.intp).ravel()
    return np.bincount(joint, minlength=NUM_LABELS**2).reshape(NUM_LABELS, NUM_LABELS)


def _ratio(num: int, den: int, empty: float) -> float:
    return float(num) / float(den) if den else empty


def overlap_scores(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Dice, IoU, sensitivity and specificity of one region from its voxel counts.

    Arguments:
        tp, fp, fn, tn: true / false positive / negative voxel counts of the region.

    Returns:
        ``{"dice", "iou", "sensitivity", "specificity"}`` with the empty-mask conventions of the
        module docstring.
    """
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, 1.0),
        "iou": _ratio(tp, tp + fp + fn, 1.0),
        "sensitivity": _ratio(tp, tp + fn, 1.0),
        "specificity": _ratio(tn, tn + fp, 1.0),
    }


def segmentation_scores(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing_mm: Sequence[float] = (1.0, 1.0, 1.0),
    regions: Mapping[str, Sequence[int]] = REGIONS,
) -> dict[str, dict[str, float]]:
    """Dice, IoU, HD95, sensitivity and specificity for each region of one case.

    Arguments:
        pred: predicted label volume ``(X, Y, Z)``, integer, internal labels 0..3.
        truth: ground-truth label volume, same shape and convention.
        spacing_mm: voxel size along each array axis of ``pred`` / ``truth``, in mm.
        regions: region name -> the labels it contains (default :data:`REGIONS`).

    Returns:
        ``{region: {"dice", "iou", "hd95_mm", "sensitivity", "specificity"}}`` as Python floats.
    """
    pred = _check_labels("prediction", np.asarray(pred))
    truth = _check_labels("ground truth", np.asarray(truth))
    if pred.shape != truth.shape:
        raise DataError(f"prediction shape {pred.shape} differs from ground truth {truth.shape}")
    # Every region lies inside the bounding box of the labelled voxels: count and measure surface
    # distances there only; the voxels outside are background in both.
    box = bounding_box((pred > 0) | (truth > 0))
    pred_box, truth_box = pred[box], truth[box]
    counts = confusion_counts(pred_box, truth_box)
    counts[0, 0] += pred.size - pred_box.size
    total = pred.size
    scores = {}
    for name, labels in regions.items():
        if 0 in labels:
            raise DataError(f"region {name} must not contain the background label 0")
        inside = np.zeros(NUM_LABELS, dtype=bool)
        inside[list(labels)] = True
        tp = int(counts[np.ix_(inside, inside)].sum())
        fp = int(counts[inside].sum()) - tp
        fn = int(counts[:, inside].sum()) - tp
        region = overlap_scores(tp, fp, fn, total - tp - fp - fn)
        region["hd95_mm"] = hd95_mm(inside[pred_box], inside[truth_box], spacing_mm)
        scores[name] = region
    return scores
