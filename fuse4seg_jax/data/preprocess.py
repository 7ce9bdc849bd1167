"""Per-volume preprocessing for the 2-D pipeline: normalisation, centre crop, slicing.

Volumes are ``(X, Y, Z)`` or ``(X, Y, Z, N)``; the brain mask of a volume is its non-zero voxels
(BraTS volumes are skull-stripped with an exact-zero background).
"""

from __future__ import annotations

import numpy as np

CLIP_PERCENTILES = (0.5, 99.5)
BRATS_SIDE = 240
CROP = (8, 232)  # 240 -> 224 loses no brain voxel in BraTS


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


def crop_window(shape: tuple[int, ...], slice_axis: int) -> tuple[slice, ...]:
    """The centre-crop window of a volume: in-plane axes of size 240 become 8:232.

    Index a volume with it to crop; assign into a zero volume of the full shape to undo the crop
    (e.g. to restack predictions before :func:`fuse4seg_jax.data.write_like`).

    Arguments:
        shape: the volume's shape ``(X, Y, Z[, N])``.
        slice_axis: the axis slices are taken along (0, 1 or 2); it is never cropped.

    Returns:
        One slice per axis of ``shape``.
    """
    return tuple(
        slice(*CROP) if axis != slice_axis and axis < 3 and side == BRATS_SIDE else slice(None)
        for axis, side in enumerate(shape)
    )


def slices_along(volume: np.ndarray, slice_axis: int) -> np.ndarray:
    """Move ``slice_axis`` first: ``(X, Y, Z, ...)`` -> ``(S, H, W, ...)`` (a view)."""
    return np.moveaxis(volume, slice_axis, 0)


def nonempty_slices(images: np.ndarray) -> np.ndarray:
    """Indices of the slices (axis 0 of ``(S, H, W, N)``) holding at least one brain voxel.

    "Empty" means no non-zero voxel in any channel: outside the skull-stripped brain.
    """
    return np.flatnonzero(images.reshape(images.shape[0], -1).any(axis=1))
