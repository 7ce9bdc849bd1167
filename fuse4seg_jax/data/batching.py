"""Deterministic numpy batches from a :class:`SliceSource`.

A small sampler of our own rather than grain: what training needs is a draw of records that is a
pure function of (seed, step), so a resumed run sees exactly the same batches without
checkpointing iterator state, plus a patient-disjoint split of each batch
(Fuse4Seg Algorithm 1). Both are a few lines over ``np.random.default_rng``; grain would add a
dependency and its own state to checkpoint for no gain at this scale (reads are one ArrayRecord
call per batch).

A batch is ``{"image": (B, H, W, N) float32, "label": (B, H, W) int32, "patient": (B,) int32,
"slice": (B,) int32}``, where ``patient`` indexes ``src.case_ids``. Shard it along B.
"""

from __future__ import annotations

import numpy as np

from fuse4seg_jax.data.dataset import SliceSource
from fuse4seg_jax.errors import DataError


def gather(src: SliceSource, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Stack the records ``indices`` of ``src`` into one batch dict."""
    indices = np.asarray(indices, dtype=np.int64)
    records = src.getitems(indices.tolist())
    return {
        "image": np.stack([r["image"] for r in records]).astype(np.float32, copy=False),
        "label": np.stack([r["label"] for r in records]).astype(np.int32, copy=False),
        "patient": src.record_case[indices],
        "slice": src.record_slice[indices],
    }


def sample_batch(src: SliceSource, batch_size: int, *, seed: int, step: int) -> dict[str, np.ndarray]:
    """A batch of ``batch_size`` records drawn without replacement, a function of (seed, step) only.

    What the step-indexed stages of a training run use: any step's batch can be drawn directly,
    so a resumed run continues mid-epoch with exactly the batches it would have seen.
    """
    if not 1 <= batch_size <= len(src):
        raise DataError(f"cannot draw a batch of {batch_size} from a split of {len(src)} slices")
    rng = np.random.default_rng([seed, step])
    return gather(src, np.sort(rng.choice(len(src), batch_size, replace=False)))


def patient_split_batch(
    src: SliceSource, tr_size: int, val_size: int, *, seed: int, step: int, inner: int = 1
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Two batches, D_tr and D_val, drawn from disjoint sets of patients (Fuse4Seg Algorithm 1).

    The patients are permuted and cut in proportion ``tr_size : val_size`` (each side gets at
    least one patient); each batch then draws its slices uniformly from its side's records,
    without replacement when there are enough. With ``inner = K > 1``, D_tr is K independent
    draws from the D_tr patients (one per inner step), interleaved sample-major: row ``b K + k``
    is sample ``b`` of draw ``k``, so that the rows a device holds after splitting along the batch
    axis are whole samples of every draw (``reshape(tr_size, K, ...)`` and a move of axis 1 to
    the front give the ``(K, tr_size, ...)`` stack).

    Arguments:
        src: the split (usually train).
        tr_size: slices in each D_tr draw.
        val_size: slices in D_val.
        seed: run seed.
        step: outer step; the pair is a function of (seed, step) only.
        inner: D_tr draws (1: the pair of Algorithm 1 as written, drawn as before this option).

    Returns:
        ``(tr, val)`` batch dicts whose ``patient`` sets are disjoint; ``tr`` has
        ``tr_size * inner`` rows.

    Raises:
        DataError: the split has fewer than 2 patients.
    """
    num_patients = len(src.case_ids)
    if num_patients < 2:
        raise DataError(
            f"a patient-level D_tr / D_val split needs >= 2 patients, the split has {num_patients}"
        )
    rng = np.random.default_rng([seed, step])
    patients = rng.permutation(num_patients)
    cut = int(np.clip(round(num_patients * tr_size / (tr_size + val_size)), 1, num_patients - 1))

    def draw(group: np.ndarray, size: int) -> dict[str, np.ndarray]:
        pool = np.flatnonzero(np.isin(src.record_case, group))
        return gather(src, np.sort(rng.choice(pool, size, replace=size > pool.size)))

    draws = [draw(patients[:cut], tr_size) for _ in range(inner)]
    tr = {k: np.stack([d[k] for d in draws], axis=1).reshape(-1, *draws[0][k].shape[1:]) for k in draws[0]}
    return tr, draw(patients[cut:], val_size)
