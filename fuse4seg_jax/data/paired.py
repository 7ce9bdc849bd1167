"""Paired-image folders (Harvard MRI-CT / MRI-PET / MRI-SPECT, GFP-PC): PNGs matched by name.

As is usual in medical image fusion, a colour image (PET, SPECT, GFP) is fused by its luma Y (read
by :func:`fuse4seg_jax.data.images.read_png`, BT.601 YCbCr); the colour is restored from the
original Cb, Cr.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from fuse4seg_jax.data.images import read_png, ycbcr_to_rgb
from fuse4seg_jax.errors import DataError


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
        (a, chroma_a), (b, chroma_b) = (read_png(folder / name) for folder in folders)
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
