"""Paired image folders as training splits: random access to pairs, split by name like patients.

A paired data set is one folder holding a sub-folder per modality, named as the config's
``data.modalities`` (e.g. ``MRI`` and ``PET``), with PNGs matched by file name
(:func:`fuse4seg_jax.data.paired.read_paired_folder`; ``fuse4seg pairs`` writes this layout).
Each pair is one sample: the pairs are split into train / val / test by name with the same
seeded permutation as BraTS patients (:func:`fuse4seg_jax.data.splits.split_cases`).

A :class:`PairSource` reads like a ``SliceSource`` to the batch sampler
(:func:`fuse4seg_jax.data.batching.sample_batch`): record ``i`` is ``{"image": (H, W, 2)
float32, "label": (H, W) int32}``, the two images stacked as channels (the first modality's
grey levels, the second's, colour images as their BT.601 luma). Pairs carry no segmentation:
the label is all background, so that the batch format stays the one every stage shares (only the
fusion stages run on pairs, and they never read it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fuse4seg_jax.data.paired import Pair, read_paired_folder
from fuse4seg_jax.data.splits import split_cases
from fuse4seg_jax.errors import DataError


class PairSource:
    """Random access to the pairs of one split.

    Attributes:
        pairs: the split's :class:`~fuse4seg_jax.data.paired.Pair` objects, sorted by name.
        case_ids: their file names.
        modalities: the two folder names, in channel order.
        record_case: ``(len,)`` int32, record ``i`` is pair ``i``.
        record_slice: ``(len,)`` int32 zeros (a pair is one image).
    """

    def __init__(self, pairs: Sequence[Pair], modalities: Sequence[str]):
        self.pairs = tuple(pairs)
        self.case_ids = tuple(p.name for p in self.pairs)
        self.modalities = tuple(modalities)
        self.record_case = np.arange(len(self.pairs), dtype=np.int32)
        self.record_slice = np.zeros(len(self.pairs), dtype=np.int32)

    def __len__(self) -> int:
        return len(self.pairs)

    def images(self, indices: Sequence[int]) -> np.ndarray:
        """``(len(indices), H, W, 2)`` float32: the pairs' images stacked as channels."""
        return np.stack([np.stack([self.pairs[i].a, self.pairs[i].b], axis=-1) for i in indices])

    def getitems(self, indices: Sequence[int]) -> list[dict]:
        """The records ``indices`` (see the module docstring)."""
        images = self.images(indices)
        return [{"image": image, "label": np.zeros(image.shape[:2], np.int32)} for image in images]


def open_pair_splits(
    paired_dir: str | os.PathLike,
    modalities: Sequence[str],
    *,
    split_seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.0, 0.2),
) -> dict[str, PairSource]:
    """Read the pairs of ``paired_dir`` and split them by name.

    Arguments:
        paired_dir: the folder holding one sub-folder per modality.
        modalities: the two sub-folder names, in channel order.
        split_seed: seed of the split.
        fractions: train, val, test fractions of the pairs.

    Returns:
        ``{split: PairSource}`` for every split that holds pairs.

    Raises:
        DataError: naming the folder or file: a folder is missing or empty, a file has no partner
            or cannot be read, the two images of a pair differ in size, or a pair's size differs
            from the others' (training batches need one size).
    """
    folder = Path(paired_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (data.paired_dir)")
    pairs = read_paired_folder(*(folder / name for name in modalities))
    first = pairs[0]
    for pair in pairs[1:]:
        if pair.a.shape != first.a.shape:
            raise DataError(
                f"{folder / modalities[0] / pair.name}: size {pair.a.shape} differs from "
                f"{first.name}'s {first.a.shape}; every pair of a training set must have one size"
            )
    by_name = {p.name: p for p in pairs}
    splits = split_cases(list(by_name), split_seed, fractions)
    return {
        split: PairSource([by_name[name] for name in names], modalities)
        for split, names in splits.items()
        if names
    }
