"""A run on paired folders (``data.kind = "paired"``): its splits, and its held-out fusion scores.

The leader is scored on every held-out pair (split ``eval.split``) against the pair's two
images with Fuse4Seg's Table 2 metrics (``fuse4seg_jax.metrics.fusion_scores``: EN, SD, SF, MI,
SCD, VIF, Qabf, AG, SSIM, PSNR on 8-bit levels, ``docs/conventions.md#metrics``), and so is the
average rule, the mean of the two images, as the baseline any trained fusion should beat. Both
are scored on luma: a colour image's BT.601 Y is what was fused, and its colour is put back only
for pictures (``fuse4seg_jax.data.paired.restore_colour``).
"""

from __future__ import annotations

from pathlib import Path

import ml_collections
import numpy as np
from tqdm.auto import tqdm

from fuse4seg_jax import data, metrics
from fuse4seg_jax.data.pair_source import PairSource
from fuse4seg_jax.data.synthetic_pairs import kind_of
from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.train.evaluation import predict_volume
from fuse4seg_jax.train.inference import fused_view
from fuse4seg_jax.train.trainer import State, Trainer

METHODS = {"leader": "trained leader", "average": "average rule"}
"""Row key -> name in the report: the run's (EMA) leader, and the mean of the two images."""


def open_pairs(config: ml_collections.ConfigDict) -> dict[str, PairSource]:
    """Generate synthetic pairs (if configured and absent), then read and split ``data.paired_dir``.

    Returns:
        ``{split: PairSource}`` for every split that holds pairs; ``eval.split`` is one of them.

    Raises:
        DataError: naming the folder or file (see :func:`fuse4seg_jax.data.open_pair_splits`).
        ConfigError: ``eval.split`` holds no pairs.
    """
    folder = Path(config.data.paired_dir)
    modalities = tuple(config.data.modalities)
    if config.data.synthetic_pairs > 0 and not folder.exists():
        data.write_synthetic_pairs(
            folder,
            kind_of(modalities),
            config.data.synthetic_pairs,
            seed=config.seed,
            size=config.data.synthetic_size,
        )
    splits = data.open_pair_splits(
        folder, modalities, split_seed=config.data.split_seed, fractions=tuple(config.data.fractions)
    )
    if config.eval.split not in splits:
        raise ConfigError(
            f"config key eval.split = {config.eval.split!r}: that split holds no pairs of {folder} "
            f"(data.fractions = {tuple(config.data.fractions)}; splits with pairs: {', '.join(splits)})"
        )
    return splits


def evaluate_pairs(
    trainer: Trainer, state: State, src: PairSource, *, max_cases: int = 0, progress: bool = True
) -> dict:
    """Fuse the pairs of ``src`` (at most ``max_cases`` if > 0) and score leader and average rule.

    Returns:
        ``rows``: ``{method: [row per pair]}`` for each key of :data:`METHODS`, a row being
        ``{"case": name, "status": "ok", <score>: value}``; ``summary``: ``{method:
        metrics.column_statistics(rows)}``; ``samples``: per pair, ``pair`` and each method's
        fused luma ``(H, W)`` in [0, 1].
    """
    pairs = src.pairs[: max_cases or None]
    images = src.images(range(len(pairs)))
    fused = {
        "leader": np.clip(
            fused_view(trainer, predict_volume(trainer, state, images)["view"], "the run"), 0, 1
        ),
        "average": images.mean(axis=-1),
    }
    rows: dict[str, list[dict]] = {method: [] for method in METHODS}
    samples = []
    for i, pair in enumerate(tqdm(pairs, desc="evaluate", disable=not progress, dynamic_ncols=True)):
        sources = np.moveaxis(images[i], -1, 0)
        for method in METHODS:
            rows[method].append(
                {"case": pair.name, "status": "ok", **metrics.fusion_scores(fused[method][i], sources)}
            )
        samples.append({"pair": pair, **{method: fused[method][i] for method in METHODS}})
    summary = {method: metrics.column_statistics(rows[method]) for method in METHODS}
    return {"rows": rows, "summary": summary, "samples": samples}
