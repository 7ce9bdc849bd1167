"""Evaluate a trained state: slices -> volumes -> the field's segmentation and fusion scores.

Every slice of a case is predicted (the val / test splits keep empty slices), and the predictions
and labels are restacked into the case's full-size volume ``(X, Y, Z)`` (zero outside the crop
window, :func:`fuse4seg_jax.data.slicing.restack`) and scored per region with the case's voxel
spacing, as BraTS evaluates: the same volume ``fuse4seg segment`` writes and ``fuse4seg evaluate``
scores. Fusion scores are computed on each case's slice with the most tumour, between the
follower's single-channel view (the fused image, or the average prior) and the N sources.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from fuse4seg_jax import metrics
from fuse4seg_jax.data.slicing import restack
from fuse4seg_jax.train import sharding
from fuse4seg_jax.train.trainer import State, Trainer


def in_chunks(fn, mesh, images: np.ndarray, chunk: int = 8) -> dict:
    """``fn(images_chunk) -> {name: (c, ...)}`` over ``images (S, ...)`` in fixed chunks.

    The last chunk is padded with zeros to the chunk size (a multiple of the data-axis size) and
    each chunk is placed on ``mesh``, so ``fn`` compiles once whatever ``S``.

    Returns:
        ``{name: (S, ...)}`` as host arrays, the padding dropped.
    """
    devices = mesh.shape[sharding.DATA]
    chunk = -(-chunk // devices) * devices
    count = images.shape[0]
    padded = np.concatenate([images, np.zeros((-count % chunk, *images.shape[1:]), images.dtype)], axis=0)
    parts = [
        jax.device_get(fn(sharding.put_batch(mesh, {"image": padded[start : start + chunk]})["image"]))
        for start in range(0, len(padded), chunk)
    ]
    return {name: np.concatenate([p[name] for p in parts])[:count] for name in parts[0]}


def predict_volume(trainer: Trainer, state: State, images: np.ndarray, chunk: int = 8) -> dict:
    """Predict ``images (S, H, W, N)`` slice by slice with the EMA leader and the follower.

    Returns:
        ``view (S, H, W, C)`` float32 (what the follower saw) and ``pred (S, H, W)`` int32.
    """
    return in_chunks(
        lambda x: trainer.predict(state["ema"], state["follower"], x), trainer.mesh, images, chunk
    )


def evaluate(trainer: Trainer, state: State, src: Any, *, max_cases: int = 0, progress: bool = True) -> dict:
    """Score every case of ``src`` (at most ``max_cases`` if > 0).

    Returns:
        a dict with ``rows`` (one per case: ``case``, ``status`` and the columns of
        ``metrics.segmentation_row`` plus the fusion scores), ``summary``
        (``metrics.column_statistics`` of the rows) and ``samples`` (one slice per case for the
        gallery: ``image``, ``view``, ``pred``, ``label``, ``case_id``, ``slice``).
    """
    case_ids = list(src.case_ids)[: max_cases or None]
    rows, samples = [], []
    for case_id in tqdm(case_ids, desc="evaluate", disable=not progress, dynamic_ncols=True):
        records = src.getitems(src.slices_of(case_id).tolist())
        images = np.stack([r["image"] for r in records])
        labels = np.stack([r["label"] for r in records])
        out = predict_volume(trainer, state, images)
        volume = src.volume_shapes[case_id], src.slice_axis, [r["slice"] for r in records]
        pred_vol, label_vol = restack(out["pred"], *volume), restack(labels, *volume)
        spacing = tuple(float(s) for s in records[0]["spacing"])
        row: dict[str, Any] = {
            "case": case_id,
            "status": "ok",
            **metrics.segmentation_row(metrics.segmentation_scores(pred_vol, label_vol, spacing)),
        }
        best = int(np.argmax((labels > 0).sum(axis=(1, 2))))
        if out["view"].shape[-1] == 1:
            sources = np.moveaxis(images[best], -1, 0)
            row.update(metrics.fusion_scores(out["view"][best, ..., 0], sources))
        rows.append(row)
        samples.append(
            {
                "case_id": case_id,
                "slice": int(records[best]["slice"]),
                "image": images[best],
                "view": out["view"][best],
                "pred": out["pred"][best],
                "label": labels[best],
            }
        )
    return {"rows": rows, "summary": metrics.column_statistics(rows), "samples": samples}
