"""D_train and D_search: a fixed patient-level split of the train split (CAF sec. 4, 50/50).

Unlike Fuse4Seg's per-step D_tr / D_val draw (``fuse4seg_jax.data.patient_split_batch``), the
split is drawn once per seed and kept for the whole search, as CAF partitions its data once.
Each iteration's batches are then a function of (seed, step) only, so a resumed search sees the
batches the uninterrupted one would have seen.
"""

from __future__ import annotations

import numpy as np

from fuse4seg_jax import data
from fuse4seg_jax.data.dataset import SliceSource
from fuse4seg_jax.errors import DataError

_SPLIT_STREAM, _BATCH_STREAM = 0, 1


def search_pools(src: SliceSource, train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Record indices of D_train and D_search, from disjoint sets of ``src``'s patients.

    Arguments:
        src: the train split.
        train_fraction: the share of patients in D_train (each side keeps at least one).
        seed: the run's seed.

    Returns:
        ``(train_records, search_records)``, sorted.

    Raises:
        DataError: fewer than 2 patients.
    """
    count = len(src.case_ids)
    if count < 2:
        raise DataError(f"the D_train / D_search split needs >= 2 patients; the train split has {count}")
    patients = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(count)
    cut = int(np.clip(round(count * train_fraction), 1, count - 1))
    return tuple(np.flatnonzero(np.isin(src.record_case, side)) for side in (patients[:cut], patients[cut:]))


def search_batches(
    src: SliceSource, pools: tuple[np.ndarray, np.ndarray], sizes: tuple[int, int], *, seed: int, step: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Iteration ``step``'s D_train and D_search batches of ``sizes`` slices (with replacement
    only where a pool is smaller than its batch)."""
    rng = np.random.default_rng([seed, _BATCH_STREAM, step])
    return tuple(
        data.gather(src, np.sort(rng.choice(pool, size, replace=size > pool.size)))
        for pool, size in zip(pools, sizes, strict=True)
    )
