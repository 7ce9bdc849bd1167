"""Fixed points of CAF's loss space: ``weights.json`` files and the comparison presets.

A weights file is a JSON object ``{term: weight}`` with exactly the terms of the N-source search
space (``fuse4seg_jax.losses.caf_term_names``, in that order when written; the order read does
not matter), each weight a finite number >= 0. ``fuse4seg search`` writes ``softmax(beta)``, which
sums to 1; weights are used as given, not renormalised. The loss they define is
``saliency_mse + sum_k w_k term_k`` (``fuse4seg_jax.losses.caf_weighted_loss``).

The config key ``loss.caf_weights`` names a file or one of :data:`PRESETS` (CAF's ablation
variants, ``docs/caf_search.md#retraining-and-comparison-rows``):

    uniform   every term 1 / K (the search's starting point)
    cddfuse   hand-made, CDDFuse-like: L1 to the pixel-wise maximum and the gradient L1 to the
              maximum gradient, 1 : 10, normalised to sum 1
    random    a uniform draw from the simplex (Dirichlet(1)), a function of the run's seed
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fuse4seg_jax.atomic import atomic_file
from fuse4seg_jax.errors import ConfigError, DataError
from fuse4seg_jax.losses.caf import caf_term_names

PRESETS = ("uniform", "cddfuse", "random")
_CDDFUSE = {"l1_max": 1.0, "gradient_max": 10.0}


def preset_weights(name: str, num_sources: int, seed: int) -> tuple[float, ...]:
    """The weights of preset ``name`` for the ``num_sources``-source space.

    Arguments:
        name: one of :data:`PRESETS`.
        num_sources: N >= 2.
        seed: the run's seed (only ``random`` reads it).

    Returns:
        ``6 N + 3`` weights summing to 1, in the order of ``caf_term_names(num_sources)``.

    Raises:
        ValueError: an unknown preset.
    """
    names = caf_term_names(num_sources)
    if name == "uniform":
        weights = np.full(len(names), 1.0 / len(names))
    elif name == "cddfuse":
        raw = np.array([_CDDFUSE.get(n, 0.0) for n in names])
        weights = raw / raw.sum()
    elif name == "random":
        weights = np.random.default_rng([seed, len(names)]).dirichlet(np.ones(len(names)))
    else:
        raise ValueError(f"unknown CAF weights preset {name!r}; expected one of {', '.join(PRESETS)}")
    return tuple(float(w) for w in weights)


def write_weights(path: str | Path, weights: Sequence[float], num_sources: int) -> None:
    """Write ``{term: weight}`` in the search space's order, atomically."""
    names = caf_term_names(num_sources)
    with atomic_file(Path(path)) as f:
        json.dump(dict(zip(names, (float(w) for w in weights), strict=True)), f, indent=1)
        f.write("\n")


def read_weights(path: str | Path, num_sources: int) -> tuple[float, ...]:
    """The weights of a ``weights.json``, in the order of ``caf_term_names(num_sources)``.

    Raises:
        DataError: the file is missing or not a JSON object, names a term outside the space, lacks
            one, or holds a weight that is not a finite number >= 0; the message names the file,
            the term and the value.
    """
    path = Path(path)
    names = caf_term_names(num_sources)
    try:
        table = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"CAF weights file {path} cannot be read: {err}") from err
    if not isinstance(table, dict):
        raise DataError(f"CAF weights file {path} holds a {type(table).__name__}, expected {{term: weight}}")
    unknown = [t for t in table if t not in names]
    if unknown:
        raise DataError(
            f"CAF weights file {path}: unknown term {unknown[0]!r}; the {num_sources}-source search "
            f"space has {', '.join(names)}"
        )
    missing = [n for n in names if n not in table]
    if missing:
        raise DataError(
            f"CAF weights file {path} has {len(table)} terms, the {num_sources}-source search space "
            f"has {len(names)}; missing {', '.join(missing)}"
        )
    for name in names:
        value = table[name]
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not (ok and value >= 0):
            raise DataError(f"CAF weights file {path}: {name} = {value!r}; expected a finite number >= 0")
    return tuple(float(table[n]) for n in names)


def resolve_caf_weights(spec: str, num_sources: int, seed: int) -> tuple[float, ...]:
    """What the config key ``loss.caf_weights`` stands for.

    Arguments:
        spec: ``""`` (no CAF loss), a preset of :data:`PRESETS`, or a weights file's path.
        num_sources: N, the modalities fused.
        seed: the run's seed (for ``random``).

    Returns:
        ``()`` for ``""``, else ``6 N + 3`` weights in the search space's order.

    Raises:
        ConfigError: naming ``loss.caf_weights``, its value and what is wrong.
    """
    if not spec:
        return ()
    try:
        if spec in PRESETS:
            return preset_weights(spec, num_sources, seed)
        return read_weights(spec, num_sources)
    except (ValueError, DataError) as err:
        raise ConfigError(
            f"config key loss.caf_weights = {spec!r}: {err} (allowed: '', {', '.join(PRESETS)} or a "
            f"weights.json path)"
        ) from err
