"""Deterministic patient-level train / val / test split (split by patient before slicing)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fuse4seg_jax.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate train / val / test fractions: three non-negative numbers summing to 1.

    Raises:
        ConfigError: naming ``--fractions`` and the values.
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or (f < 0).any() or abs(f.sum() - 1.0) > 1e-6:
        raise ConfigError(
            f"--fractions must be three non-negative numbers summing to 1, got {list(fractions)}"
        )
    return tuple(float(x) for x in f)


def split_counts(num_cases: int, fractions: Sequence[float]) -> list[int]:
    """How many patients each split gets: every split with a positive fraction gets at least one,
    the rest go by largest remainder.

    Raises:
        ConfigError: bad fractions.
        DataError: fewer cases than splits with a positive fraction.
    """
    f = np.asarray(check_fractions(fractions))
    wanted = int((f > 0).sum())
    if num_cases < wanted:
        raise DataError(
            f"{num_cases} cases cannot fill {wanted} non-empty splits (--fractions {list(fractions)})"
        )
    exact = f * num_cases
    counts = np.where(f > 0, np.maximum(np.floor(exact), 1), 0).astype(int)
    while counts.sum() > num_cases:
        counts[np.argmax(counts)] -= 1
    for i in np.argsort(-(exact - counts), kind="stable")[: num_cases - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def split_cases(
    case_ids: Sequence[str], seed: int, fractions: Sequence[float] = (0.7, 0.1, 0.2)
) -> dict[str, list[str]]:
    """Assign each patient to exactly one of train / val / test.

    The sorted ids are permuted by ``seed``; the split depends only on the set of ids, the seed
    and the fractions (not on discovery order).

    Arguments:
        case_ids: the patients.
        seed: split seed.
        fractions: train, val, test fractions (sum 1).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted.
    """
    ids = sorted(set(case_ids))
    counts = split_counts(len(ids), fractions)
    order = np.random.default_rng(seed).permutation(len(ids))
    bounds = np.cumsum([0, *counts])
    return {name: sorted(ids[i] for i in order[bounds[k] : bounds[k + 1]]) for k, name in enumerate(SPLITS)}
