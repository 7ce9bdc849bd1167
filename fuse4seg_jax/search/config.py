"""The search configs: a train config for CAF's hierarchical training plus a ``search`` block.

A search config is a valid ``fuse4seg train`` config whose stages are the retraining that follows
the search (``stages.fusion`` steps of a fresh fusion network on the fixed CAF loss, then
``stages.follower`` steps of the task network on its fused images, CAF sec. 3.4), with
``loss.caf_weights`` naming the loss to retrain with (``uniform`` unless set). So
``fuse4seg train --config configs/caf_search.py:demo --config.loss.caf_weights=cddfuse`` is a
comparison row at the same compute as the searched row. The ``search`` block:

    search.warmup        iterations before the search that train the task and fusion networks
                         with beta held at its start (equal weights), so the task network is past
                         the all-background predictor when its loss starts steering beta (CAF's
                         task networks are pre-trained; ours start from scratch)
    search.steps         iterations of Algorithm 1
    search.beta_lr       Adam learning rate of beta (CAF: 5e-2)
    search.beta_decay    beta's learning rate is multiplied by this every step (CAF: 0.998)
    search.fusion_lr     Adam learning rate of the fusion network during the search (CAF: 1e-4)
    search.task_lr       Adam learning rate of the task network during the search
    search.train_fraction  share of the train split's patients in D_train (CAF: 0.5)
    search.compare       presets retrained after the searched weights (comparison rows)

``batch.tr_size`` / ``batch.val_size`` are the D_train / D_search batches; ``bilevel.solver`` and
``bilevel.inner_steps`` (K) choose the hypergradient (CAF: ``finite_difference``, K = 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from fuse4seg_jax import models
from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.search.weights import PRESETS, resolve_caf_weights
from fuse4seg_jax.train.checks import require_segmentation_data, validate_config
from fuse4seg_jax.train.choices import model_arguments
from fuse4seg_jax.train.defaults import base_config, demo_config, smoke_config

_BASES = {"paper": base_config, "demo": demo_config, "smoke": smoke_config}


def search_config(preset: str = "paper") -> ml_collections.ConfigDict:
    """The search config on ``preset``'s data and sizes (module docstring).

    Arguments:
        preset: ``paper`` (BraTS, CAF's settings), ``demo`` (phantom, minutes on 2 CPU cores) or
            ``smoke`` (seconds, for tests).

    Raises:
        ValueError: an unknown preset.
    """
    if preset not in _BASES:
        raise ValueError(f"unknown search preset {preset!r}; expected one of {', '.join(_BASES)}")
    c = _BASES[preset]()
    c.model.fusion = "caf_dense"
    c.follower_input = c.eval_input = "fused"
    c.bilevel.solver = "finite_difference"
    c.bilevel.inner_steps = 1
    c.bilevel.ema = 0.0  # CAF evaluates the fusion network as trained, without an EMA
    for term in c.loss.weights:
        c.loss.weights[term] = 0.0  # the CAF loss is the whole fusion objective
    c.loss.caf_weights = "uniform"
    c.optim.leader_lr = 1e-4
    c.search = ml_collections.ConfigDict(
        {
            "warmup": 0,
            "steps": 2000,
            "beta_lr": 5e-2,
            "beta_decay": 0.998,
            "fusion_lr": 1e-4,
            "task_lr": c.optim.follower_lr,
            "train_fraction": 0.5,
            "compare": (),
        }
    )
    c.stages.pretrain, c.stages.bilevel = 0, 0
    if preset == "paper":
        c.stages.fusion, c.stages.follower = 100, 40  # epochs (the paper config's stages.unit)
    elif preset == "demo":
        # a fresh caf_dense learns its loss in a few hundred steps only at a larger rate than CAF's
        c.search.steps, c.search.fusion_lr, c.optim.leader_lr = 100, 1e-3, 1e-3
        # from scratch the task network leaves the all-background predictor after 300 to 500 steps
        c.search.warmup = 600
        # the task network is still at the trivial (all-background) predictor after 300 steps
        c.stages.fusion, c.stages.follower = 150, 600
    else:
        c.model.segmentation_sizes.convnext_unet.update({"widths": (8, 16), "depths": (1, 1)})
        c.search.warmup, c.search.steps, c.search.fusion_lr = 2, 4, 1e-3
        c.stages.fusion, c.stages.follower = 2, 2
    return c


def with_caf_weights(config: ml_collections.ConfigDict, spec: str) -> ml_collections.ConfigDict:
    """A locked copy of ``config`` retraining with ``loss.caf_weights = spec``."""
    row = ml_collections.ConfigDict(config.to_dict())
    row.loss.caf_weights = spec
    row.lock()
    return row


def validate_search_config(config: ml_collections.ConfigDict) -> None:
    """Check a search config before anything is written: the train checks plus the search's own.

    Raises:
        ConfigError: naming the first offending key, its value and what is allowed.
    """
    if "search" not in config:
        raise ConfigError("the config has no search block; start from configs/caf_search.py")
    require_segmentation_data(config, "search")
    validate_config(config)
    s = config.search
    for key, holds, allowed in (
        ("warmup", s.warmup >= 0, "an integer >= 0"),
        ("steps", s.steps >= 1, "an integer >= 1"),
        ("beta_lr", s.beta_lr > 0, "a number > 0"),
        ("beta_decay", 0 < s.beta_decay <= 1, "0 < decay <= 1"),
        ("fusion_lr", s.fusion_lr > 0, "a number > 0"),
        ("task_lr", s.task_lr > 0, "a number > 0"),
        ("train_fraction", 0 < s.train_fraction < 1, "0 < fraction < 1"),
    ):
        if not holds:
            raise ConfigError(f"config key search.{key} = {s[key]!r}; expected {allowed}")
    if config.batch.accumulation != 1:
        raise ConfigError(f"config key batch.accumulation = {config.batch.accumulation}; the search needs 1")
    for spec in s.compare:
        if spec not in PRESETS:
            raise ConfigError(f"config key search.compare holds {spec!r}; expected presets of {PRESETS}")
        resolve_caf_weights(spec, len(config.data.modalities), config.seed)
    check_task_takes_fused(config)


def check_task_takes_fused(config: ml_collections.ConfigDict) -> None:
    """The task network must read the fused image ``(B, H, W, 1)``; shapes only, nothing computed.

    Raises:
        ConfigError: ``eval_input`` / ``follower_input`` is not ``fused``, or the configured
            ``model.segmentation`` fails on a one-channel image (naming the error).
    """
    for key in ("follower_input", "eval_input"):
        if config[key] != "fused":
            raise ConfigError(
                f"config key {key} = {config[key]!r}; the CAF search's task network reads the fused "
                f"image, expected 'fused'"
            )
    name = config.model.segmentation
    arguments = model_arguments(config, "segmentation", len(config.data.modalities))
    try:
        module = nnx.eval_shape(lambda: models.build("segmentation", name, rngs=nnx.Rngs(0), **arguments))
        task, params = models.split_module(module)
        jax.eval_shape(task.apply, params, jax.ShapeDtypeStruct((1, 64, 64, 1), jnp.float32))
    except Exception as err:  # any failure of a user's model on the fused image's shape
        raise ConfigError(
            f"config key model.segmentation = {name!r}: the task network cannot take the fused image "
            f"(B, H, W, 1): {err}"
        ) from err
