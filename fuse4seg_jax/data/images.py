"""Read 2-D images (PNG, or 2-D NIfTI) as luma in [0, 1] plus the colour, if any.

Arrays are ``(H, W)``: rows, then columns, as a PNG is stored. A 2-D NIfTI file (or a 3-D one with
a single slice) is read in the same layout, ``(Y, X)``, so a NIfTI image and a PNG of the same
picture give the same array.

A colour image is split into luma and chroma with full-range ITU-R BT.601 YCbCr (the JPEG
convention) on [0, 1]: ``Y = 0.299 R + 0.587 G + 0.114 B``, ``Cb = 0.5 + (B - Y) / 1.772``,
``Cr = 0.5 + (R - Y) / 1.402``. An RGB image whose three channels are equal is grey.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fuse4seg_jax.data.nifti import read_nifti
from fuse4seg_jax.errors import DataError

NIFTI_SUFFIX = ".nii.gz"

_KR, _KB = 0.299, 0.114
_RGB_TO_YCBCR = np.array(
    [
        [_KR, 1 - _KR - _KB, _KB],
        [-0.5 * _KR / (1 - _KB), -0.5 * (1 - _KR - _KB) / (1 - _KB), 0.5],
        [0.5, -0.5 * (1 - _KR - _KB) / (1 - _KR), -0.5 * _KB / (1 - _KR)],
    ]
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)
_CHROMA_OFFSET = np.array([0.0, 0.5, 0.5])


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` RGB in [0, 1] -> ``(..., 3)`` Y, Cb, Cr in [0, 1] (float32, BT.601)."""
    return (np.asarray(rgb, dtype=np.float64) @ _RGB_TO_YCBCR.T + _CHROMA_OFFSET).astype(np.float32)


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`; the result is clipped to [0, 1]."""
    rgb = (np.asarray(ycbcr, dtype=np.float64) - _CHROMA_OFFSET) @ _YCBCR_TO_RGB.T
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def read_png(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a PNG (8- or 16-bit, grey, palette or colour; alpha is ignored).

    Arguments:
        path: the file.

    Returns:
        ``(luma, chroma)``: luma ``(H, W)`` float32 in [0, 1] (grey levels / 255, or / 65535 for
        16-bit), chroma ``(H, W, 2)`` float32 Cb, Cr, or None for a grey image.

    Raises:
        DataError: naming ``path``: missing, not an image, or unreadable.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image.convert("RGB" if mode not in ("L", "I;16", "I") else mode))
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"{path}: cannot read image ({err})") from None
    scale = 65535.0 if array.dtype == np.uint16 or mode.startswith("I") else 255.0
    array = array.astype(np.float64) / scale
    if array.ndim == 2:
        return array.astype(np.float32), None
    if np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2]):
        return array[..., 0].astype(np.float32), None
    ycbcr = rgb_to_ycbcr(array)
    return ycbcr[..., 0], ycbcr[..., 1:]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A 2-D image's luma, from a PNG or a 2-D NIfTI file.

    Arguments:
        path: a ``.png`` (see :func:`read_png`) or ``.nii.gz`` file; a NIfTI image keeps its own
            dtype and values (the caller decides their range).

    Returns:
        ``(H, W)``: float32 luma in [0, 1] for a PNG, the voxels as stored for NIfTI.

    Raises:
        DataError: naming ``path``: unreadable, or not 2-D.
    """
    path = Path(path)
    if not path.name.endswith(NIFTI_SUFFIX):
        return read_png(path)[0]
    image = np.squeeze(read_nifti(path, dims=(2, 3))[0])
    if image.ndim != 2:
        raise DataError(f"{path}: expected a 2-D image, got shape {image.shape}")
    return image.T
