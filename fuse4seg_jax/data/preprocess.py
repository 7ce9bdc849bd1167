"""Per-volume intensity normalisation for the 2-D pipeline.

Volumes are ``(X, Y, Z)``; the brain mask of a volume is its non-zero voxels (BraTS volumes are
skull-stripped with an exact-zero background). See ``docs/conventions.md#labels-and-data``.
"""

from __future__ import annotations

import numpy as np

CLIP_PERCENTILES = (0.5, 99.5)


def normalise_volume(volume: np.ndarray, percentiles: tuple[float, float] = CLIP_PERCENTILES) -> np.ndarray:
    """Clip the brain voxels to their percentiles, then min-max them to [0, 1]; background stays 0.

    Arguments:
        volume: ``(X, Y, Z)`` raw intensities; non-zero voxels are the brain.
        percentiles: lower and upper clip percentiles of the brain voxels.

    Returns:
        ``(X, Y, Z)`` float32 in [0, 1]. A volume without brain, or with a constant brain, is all 0.
    """
    out = np.zeros(volume.shape, dtype=np.float32)
    brain = volume != 0
    values = volume[brain].astype(np.float64)
    if values.size == 0:
        return out
    lo, hi = np.percentile(values, percentiles)
    if hi > lo:
        out[brain] = (np.clip(values, lo, hi) - lo) / (hi - lo)
    return out
