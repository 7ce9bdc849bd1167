"""The 2-D pipeline's view of a volume: centre-cropped slices along one axis, and back.

Volumes are ``(X, Y, Z)`` or ``(X, Y, Z, C)`` (NIfTI index order, see
:mod:`fuse4seg_jax.data.nifti`); slices are ``(S, H, W)`` or ``(S, H, W, C)`` with ``S`` along
:data:`SLICE_AXIS`. In-plane sides of 240 voxels (BraTS) are cropped to 224 at ``8:232``, which loses
no brain voxel; other sizes are kept. :func:`to_slices` and :func:`restack` are each other's
inverse on the crop window, and :func:`restack` fills the border outside it with zeros (background).
Preparing the dataset, training evaluation and inference all slice and restack here, so every path
scores the same full-size volume. See ``docs/conventions.md#labels-and-data``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fuse4seg_jax.errors import DataError

SLICE_AXIS = 2
"""Slices are taken along Z (axial slices of BraTS volumes)."""

BRATS_SIDE = 240
CROP = (8, 232)


def crop_window(shape: Sequence[int], slice_axis: int = SLICE_AXIS) -> tuple[slice, ...]:
    """The centre-crop window of a volume: in-plane axes of size 240 become ``8:232``.

    Arguments:
        shape: the volume's shape ``(X, Y, Z[, C])``.
        slice_axis: the axis slices are taken along (0, 1 or 2); it is never cropped.

    Returns:
        One slice per axis of ``shape``.
    """
    return tuple(
        slice(*CROP) if axis != slice_axis and axis < 3 and side == BRATS_SIDE else slice(None)
        for axis, side in enumerate(shape)
    )


def to_slices(volume: np.ndarray, slice_axis: int = SLICE_AXIS) -> np.ndarray:
    """Crop a volume and move its slice axis first: ``(X, Y, Z[, C])`` -> ``(S, H, W[, C])`` (a view)."""
    return np.moveaxis(volume[crop_window(volume.shape, slice_axis)], slice_axis, 0)


def restack(
    slices: np.ndarray,
    volume_shape: Sequence[int],
    slice_axis: int = SLICE_AXIS,
    indices: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Put slices made by :func:`to_slices` back into a full-size volume, zero elsewhere.

    Arguments:
        slices: ``(S, H, W[, C])`` in slice order.
        volume_shape: the uncropped volume's ``(X, Y, Z)`` (further entries are ignored).
        slice_axis: the axis the slices were taken along.
        indices: ``(S,)`` position of each slice along ``slice_axis``; None when the slices are
            all of the volume's, in order. Slices not listed stay zero.

    Returns:
        ``(X, Y, Z[, C])`` of ``slices``' dtype: the slices inside the crop window, 0 outside it.

    Raises:
        DataError: the slices do not fit the crop window of ``volume_shape``.
    """
    slices = np.asarray(slices)
    full = np.zeros((*tuple(volume_shape)[:3], *slices.shape[3:]), slices.dtype)
    # basic indexing and moveaxis give views: assigning through them fills ``full``
    target = to_slices(full, slice_axis)
    rows = slice(None) if indices is None else np.asarray(indices)
    if target[rows].shape != slices.shape:
        raise DataError(
            f"slices of shape {slices.shape} do not fit a volume of {tuple(volume_shape)[:3]} "
            f"sliced along axis {slice_axis} (expected {target[rows].shape})"
        )
    target[rows] = slices
    return full


def nonempty_slices(images: np.ndarray) -> np.ndarray:
    """Indices of the slices (axis 0 of ``(S, H, W, N)``) holding at least one brain voxel.

    "Empty" means no non-zero voxel in any channel: outside the skull-stripped brain.
    """
    return np.flatnonzero(images.reshape(images.shape[0], -1).any(axis=1))
