"""BraTS label values on disk <-> the internal classes 0..3.

On disk a BraTS segmentation holds 0 background, 1 NCR (necrotic core), 2 ED (oedema) and ET
(enhancing tumour) as 4 in BraTS 2021 or 3 in BraTS 2023. Internally ET is always 3, so classes are
0..3 whatever the edition. The edition of a case is called its naming (``"2021"`` or ``"2023"``).
See ``docs/conventions.md#labels-and-data``.
"""

from __future__ import annotations

import os

import numpy as np

from fuse4seg_jax.errors import DataError

ET_LABELS = {"2021": 4, "2023": 3}
"""Naming -> the on-disk label of enhancing tumour."""

_HIGHEST = max(ET_LABELS.values())


def check_label_values(volume: np.ndarray, path: str | os.PathLike) -> tuple[np.ndarray, set[int]]:
    """Check that a volume holds on-disk labels of some naming: integers in ``0..4``.

    Arguments:
        volume: the label voxels as read, any shape and dtype.
        path: the file, named in errors.

    Returns:
        ``(labels, values)``: the voxels as int64 and the set of values present.

    Raises:
        DataError: naming ``path``: a non-integer value (shown), or values outside ``0..4``.
    """
    volume = np.asarray(volume)
    if not np.issubdtype(volume.dtype, np.integer):
        fractional = ~np.isfinite(volume) | (volume != np.round(volume))
        if np.any(fractional):
            raise DataError(f"{path}: non-integer label values (for example {volume[fractional].flat[0]})")
    volume = volume.astype(np.int64)
    low, high = int(volume.min()), int(volume.max())
    if low < 0 or high > _HIGHEST:
        raise DataError(f"{path}: label values must lie in 0..{_HIGHEST}, found {low}..{high}")
    return volume, set(np.flatnonzero(np.bincount(volume.ravel())).tolist())


def naming_of(values: set[int], path: str | os.PathLike) -> str | None:
    """The naming whose ET label is among ``values``, or None when no ET voxel is present.

    Raises:
        DataError: naming ``path``: both 3 and 4 are present, so the ET label is ambiguous.
    """
    if set(ET_LABELS.values()) <= values:
        raise DataError(f"{path}: holds both 3 and 4; pass --et-label to say which is ET")
    return next((naming for naming, et in ET_LABELS.items() if et in values), None)


def to_internal(seg: np.ndarray, naming: str, path: str | os.PathLike = "seg", hint: str = "") -> np.ndarray:
    """Map on-disk labels of ``naming`` to internal classes 0..3 (ET 4 or 3 -> 3).

    Arguments:
        seg: on-disk label voxels, any shape, integer-valued.
        naming: ``"2021"`` (ET 4) or ``"2023"`` (ET 3).
        path: the file, named in errors.
        hint: appended to the error's explanation (say which option sets the naming).

    Returns:
        int32 array of ``seg``'s shape.

    Raises:
        DataError: naming ``path`` and the values that are not 0, 1, 2 or the naming's ET label.
    """
    seg, values = check_label_values(seg, path)
    et = ET_LABELS[naming]
    unexpected = sorted(values - {0, 1, 2, et})
    if unexpected:
        raise DataError(
            f"{path}: unexpected label values {unexpected} (expected 0, 1, 2 and {et} for ET, "
            f"as in BraTS {naming}{hint})"
        )
    lut = np.zeros(_HIGHEST + 1, dtype=np.int32)
    lut[[0, 1, 2, et]] = (0, 1, 2, 3)
    return lut[seg]


def to_brats(label: np.ndarray, naming: str) -> np.ndarray:
    """Map internal classes 0..3 back to the on-disk labels of ``naming`` (uint8)."""
    return np.array([0, 1, 2, ET_LABELS[naming]], dtype=np.uint8)[np.asarray(label, dtype=np.int64)]
