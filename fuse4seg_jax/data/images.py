"""Read 2-D images (PNG, or 2-D NIfTI) as luma in [0, 1] plus the colour, if any.

Arrays are ``(H, W)``: rows, then columns, as a PNG is stored. A 2-D NIfTI file (or a 3-D one with
a single slice) is read in the same layout, ``(Y, X)``, so a NIfTI image and a PNG of the same
picture give the same array.

A colour image is split into luma and chroma with full-range ITU-R BT.601 YCbCr (the JPEG
convention) on [0, 1]: ``Y = 0.299 R + 0.587 G + 0.114 B``, ``Cb = 0.5 + (B - Y) / 1.772``,
``Cr = 0.5 + (R - Y) / 1.402``. An RGB image whose three channels are equal is grey.

``grey="cddfuse"`` makes the luma the grey levels the CDDFuse evaluator reads (OpenCV 4.5's
``imread`` then ``cvtColor(BGR2GRAY)`` on float32, then rounding; see
``docs/conventions.md#metrics``): a 16-bit PNG keeps its high byte, and colour becomes
``round(fma(R, 0.299, fma(B, 0.114, G * 0.587)))`` in float32 arithmetic, round half to even.
That is the rounded BT.601 luma except where ``0.299 R + 0.587 G + 0.114 B`` is exactly a
half-integer; there float32 rounding decides.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fuse4seg_jax.data.nifti import read_nifti
from fuse4seg_jax.errors import ConfigError, DataError

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
GREY_CONVERSIONS = ("luma", "cddfuse")
"""How :func:`read_png` makes grey levels: float BT.601 luma, or the CDDFuse evaluator's rounding."""
_CV_R, _CV_G, _CV_B = (float(np.float32(k)) for k in (0.299, 0.587, 0.114))


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` RGB in [0, 1] -> ``(..., 3)`` Y, Cb, Cr in [0, 1] (float32, BT.601)."""
    return (np.asarray(rgb, dtype=np.float64) @ _RGB_TO_YCBCR.T + _CHROMA_OFFSET).astype(np.float32)


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`; the result is clipped to [0, 1]."""
    rgb = (np.asarray(ycbcr, dtype=np.float64) - _CHROMA_OFFSET) @ _YCBCR_TO_RGB.T
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def _cddfuse_grey_levels(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` 8-bit RGB -> ``(...)`` uint8 grey levels as the CDDFuse evaluator makes them.

    OpenCV's float32 ``BGR2GRAY`` on a CPU with fused multiply-add computes
    ``fma(R, 0.299f, fma(B, 0.114f, G * 0.587f))`` (matched on all 2^24 colours with opencv-python
    4.5.5 and 5.0 on x86-64), and the evaluator rounds that half to even.
    Each product of an 8-bit level and a float32 coefficient, plus a float32, is exact in float64,
    so rounding each step to float32 reproduces the fused operations.
    """
    r, g, b = (np.asarray(rgb, dtype=np.float64)[..., i] for i in range(3))
    inner = (g * _CV_G).astype(np.float32)
    inner = (b * _CV_B + inner).astype(np.float32)
    return np.round((r * _CV_R + inner).astype(np.float32)).astype(np.uint8)


def read_png(path: str | os.PathLike, grey: str = "luma") -> tuple[np.ndarray, np.ndarray | None]:
    """Read a PNG (8- or 16-bit, grey, palette or colour; alpha is ignored).

    Arguments:
        path: the file.
        grey: one of :data:`GREY_CONVERSIONS`. ``"luma"``: 16-bit levels / 65535, colour as float
            BT.601 luma. ``"cddfuse"``: the CDDFuse evaluator's 8-bit grey levels / 255 (16-bit
            keeps its high byte, colour rounded as the module docstring says).

    Returns:
        ``(luma, chroma)``: luma ``(H, W)`` float32 in [0, 1], chroma ``(H, W, 2)`` float32 Cb, Cr
        (always float BT.601), or None for a grey image.

    Raises:
        DataError: naming ``path``: missing, not an image, or unreadable.
        ConfigError: ``grey`` is not one of :data:`GREY_CONVERSIONS`.
    """
    if grey not in GREY_CONVERSIONS:
        raise ConfigError(f"grey={grey!r}: expected one of {', '.join(GREY_CONVERSIONS)}")
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image.convert("RGB" if mode not in ("L", "I;16", "I") else mode))
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"{path}: cannot read image ({err})") from None
    sixteen_bit = array.dtype == np.uint16 or mode.startswith("I")
    if sixteen_bit and grey == "cddfuse":
        # OpenCV's imread (IMREAD_COLOR) drops the low byte of 16-bit samples.
        array, sixteen_bit = array >> 8, False
    levels, array = array, array.astype(np.float64) / (65535.0 if sixteen_bit else 255.0)
    if array.ndim == 2:
        return array.astype(np.float32), None
    if np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2]):
        return array[..., 0].astype(np.float32), None
    ycbcr = rgb_to_ycbcr(array)
    if grey == "cddfuse":
        return (_cddfuse_grey_levels(levels) / np.float32(255.0)).astype(np.float32), ycbcr[..., 1:]
    return ycbcr[..., 0], ycbcr[..., 1:]


def read_image(path: str | os.PathLike, grey: str = "luma") -> np.ndarray:
    """A 2-D image's luma, from a PNG or a 2-D NIfTI file.

    Arguments:
        path: a ``.png`` (see :func:`read_png`) or ``.nii.gz`` file; a NIfTI image keeps its own
            dtype and values (the caller decides their range).
        grey: how a PNG becomes grey, one of :data:`GREY_CONVERSIONS` (see :func:`read_png`).

    Returns:
        ``(H, W)``: float32 luma in [0, 1] for a PNG, the voxels as stored for NIfTI.

    Raises:
        DataError: naming ``path``: unreadable, or not 2-D.
    """
    path = Path(path)
    if not path.name.endswith(NIFTI_SUFFIX):
        return read_png(path, grey)[0]
    image = np.squeeze(read_nifti(path, dims=(2, 3))[0])
    if image.ndim != 2:
        raise DataError(f"{path}: expected a 2-D image, got shape {image.shape}")
    return image.T
