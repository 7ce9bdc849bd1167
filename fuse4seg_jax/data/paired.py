"""Paired-image folders (Harvard MRI-CT / MRI-PET / MRI-SPECT, GFP-PC): PNGs matched by name.

As is usual in medical image fusion, a colour image (PET, SPECT, GFP) is converted to YCbCr; the
Y channel is fused with the grey image and the colour is restored from the original Cb, Cr.
YCbCr is full-range ITU-R BT.601 (the JPEG convention) on [0, 1]:
``Y = 0.299 R + 0.587 G + 0.114 B``, ``Cb = 0.5 + (B - Y) / 1.772``, ``Cr = 0.5 + (R - Y) / 1.402``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from fuse4seg_jax.errors import DataError

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


@dataclasses.dataclass(frozen=True)
class Pair:
    """One registered image pair.

    Attributes:
        name: the shared file name.
        a: ``(H, W)`` float32 in [0, 1]: the grey image of folder A, or the Y of a colour one.
        b: ``(H, W)`` float32 in [0, 1]: the same for folder B.
        chroma: ``(H, W, 2)`` float32 Cb, Cr of the colour image (B's if B is colour, else A's),
            or None when both are grey.
    """

    name: str
    a: np.ndarray
    b: np.ndarray
    chroma: np.ndarray | None


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` RGB in [0, 1] -> ``(..., 3)`` Y, Cb, Cr in [0, 1] (float32, BT.601)."""
    return (np.asarray(rgb, dtype=np.float64) @ _RGB_TO_YCBCR.T + _CHROMA_OFFSET).astype(np.float32)


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`; the result is clipped to [0, 1]."""
    rgb = (np.asarray(ycbcr, dtype=np.float64) - _CHROMA_OFFSET) @ _YCBCR_TO_RGB.T
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def _read_png(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(luma (H, W) in [0, 1], CbCr (H, W, 2) or None for a grey image, also RGB with R = G = B)."""
    from PIL import Image, UnidentifiedImageError

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


def read_paired_folder(dir_a: str | os.PathLike, dir_b: str | os.PathLike) -> list[Pair]:
    """Read the PNG pairs of two folders, matched by file name.

    Arguments:
        dir_a: e.g. the MRI folder.
        dir_b: e.g. the CT / PET / SPECT folder.

    Returns:
        The pairs sorted by name.

    Raises:
        DataError: a folder is missing or empty, a file has no partner (all are named), a file
            is unreadable, or the two images of a pair differ in size.
    """
    folders = [Path(dir_a), Path(dir_b)]
    names = []
    for folder in folders:
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder")
        found = {p.name for p in folder.iterdir() if p.suffix.lower() == ".png"}
        if not found:
            raise DataError(f"{folder}: no PNG images")
        names.append(found)
    for folder, mine, other in ((folders[0], names[0], names[1]), (folders[1], names[1], names[0])):
        unmatched = sorted(mine - other)
        if unmatched:
            raise DataError(f"{folder}: no partner in the other folder for {', '.join(unmatched)}")
    pairs = []
    for name in sorted(names[0]):
        (a, chroma_a), (b, chroma_b) = (_read_png(folder / name) for folder in folders)
        if a.shape != b.shape:
            raise DataError(f"{folders[1] / name}: size {b.shape} differs from {folders[0] / name} {a.shape}")
        pairs.append(Pair(name, a, b, chroma_b if chroma_b is not None else chroma_a))
    return pairs


def restore_colour(fused_y: np.ndarray, pair: Pair) -> np.ndarray:
    """Put the pair's colour back on a fused luma image.

    Arguments:
        fused_y: ``(H, W)`` fused image in [0, 1].
        pair: the pair it was fused from.

    Returns:
        ``(H, W, 3)`` uint8 RGB (grey replicated when the pair has no colour).
    """
    y = np.clip(np.asarray(fused_y, dtype=np.float32), 0.0, 1.0)
    if pair.chroma is None:
        rgb = np.repeat(y[..., None], 3, axis=-1)
    else:
        rgb = ycbcr_to_rgb(np.concatenate([y[..., None], pair.chroma], axis=-1))
    return np.rint(rgb * 255.0).astype(np.uint8)
