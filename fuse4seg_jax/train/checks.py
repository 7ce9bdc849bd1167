"""Config checks, run once per run before anything is written: errors and warnings name the key.

:func:`validate_config` raises on a config that cannot run as written (a choice that does not
exist, a number out of its range, batches that do not split over the devices, model sizes or
solver options the constructors reject); :func:`config_warnings` lists choices that run but
probably not as meant, in a config that passed the checks. ``fuse4seg_jax.train.loop.run_training``
runs both (the ``train`` command prints the warnings); the ``Trainer`` trusts its config.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import ml_collections
from flax import nnx

import bilevel
from fuse4seg_jax import losses, models
from fuse4seg_jax.data.splits import check_fractions
from fuse4seg_jax.data.synthetic_pairs import KINDS as SYNTHETIC_KINDS
from fuse4seg_jax.data.synthetic_pairs import folder_names, kind_of
from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.search.weights import resolve_caf_weights
from fuse4seg_jax.train import sharding
from fuse4seg_jax.train.choices import model_arguments, solver_from_config
from fuse4seg_jax.train.monitor import monitor_reference
from fuse4seg_jax.train.objectives import FOLLOWER_INPUTS, PRETRAIN_OBJECTIVES
from fuse4seg_jax.train.optimizers import OPTIMIZERS, PARAMETER_SETS, SCHEDULES, optimizer_settings
from fuse4seg_jax.train.smfnet_objectives import stage_one_from_config
from fuse4seg_jax.train.stages import STAGES, UNITS, leader_can_pretrain

PRECISIONS = ("float32", "bfloat16")
DATA_KINDS = ("brats", "paired")
BATCHES = ("batch.size", "batch.tr_size", "batch.val_size")

# (key, holds, what is allowed) for numbers with a fixed range
_RANGES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    *((f"stages.{k}", lambda v: v >= 0, "an integer >= 0") for k in STAGES),
    ("bilevel.inner_steps", lambda v: v >= 1, "an integer >= 1 (K)"),
    ("bilevel.ema", lambda v: 0 <= v < 1, "0 <= m < 1"),
    ("bilevel.monitor.every", lambda v: v >= 0, "an integer >= 0 (0: no monitor)"),
    ("bilevel.monitor.lanczos", lambda v: v >= 1, "an integer >= 1"),
    *((key, lambda v: v >= 1, "an integer >= 1") for key in BATCHES),
    ("batch.accumulation", lambda v: v >= 1, "an integer >= 1"),
    *(
        (f"optim.{k}_lr", lambda v: v > 0, "a number > 0")
        for k in ("leader", "follower", "pretrain", "discriminator")
    ),
    ("optim.weight_decay", lambda v: v >= 0, "a number >= 0"),
    ("loss.pretrain_decomp", lambda v: v >= 0, "a number >= 0"),
    ("loss.fusion_adversarial", lambda v: v >= 0, "a number >= 0 (0: off)"),
    ("loss.pretrain_sigma", lambda v: 0 <= v <= 1, "a number in [0, 1] (v1 eq. 9's sigma)"),
    ("optim.clip_norm", lambda v: v >= 0, "a number >= 0 (0: no clipping)"),
    ("log_every", lambda v: v >= 1, "an integer >= 1"),
    ("checkpoint_every", lambda v: v >= 1, "an integer >= 1"),
    ("eval.max_cases", lambda v: v >= 0, "an integer >= 0 (0: all)"),
)


def _get(config: ml_collections.ConfigDict, key: str) -> Any:
    return functools.reduce(lambda node, part: node[part], key.split("."), config)


def _require(holds: bool, key: str, value: Any, allowed: str) -> None:
    if not holds:
        raise ConfigError(f"config key {key} = {value!r}; expected {allowed}")


def _choice(config: ml_collections.ConfigDict, key: str, choices: Any) -> None:
    value = _get(config, key)
    _require(value in choices, key, value, f"one of {', '.join(choices)}")


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Check everything a run depends on that can be checked before it starts.

    Runs on the global devices (after ``jax.distributed.initialize`` on several hosts): batch
    sizes must split over the data axis of the configured mesh.

    Raises:
        ConfigError: naming the first offending key, its value and what is allowed.
    """
    for key in ("follower_input", "eval_input"):
        _choice(config, key, FOLLOWER_INPUTS)
    if (config.follower_input == "stacked") != (config.eval_input == "stacked"):
        raise ConfigError("config keys follower_input and eval_input must both be 'stacked' or neither")
    _choice(config, "precision", PRECISIONS)
    _choice(config, "optim.optimizer", OPTIMIZERS)
    _choice(config, "optim.schedule", SCHEDULES)
    _choice(config, "stages.unit", UNITS)
    _choice(config, "loss.pretrain_objective", PRETRAIN_OBJECTIVES)
    families = ["fusion", "segmentation"]
    if config.loss.adversarial > 0:
        families.append("discriminator")
        _choice(config, "loss.generator_form", sorted(losses.GENERATOR_LOSSES))
    for family in families:
        _choice(config, f"model.{family}", models.names(family))
    for key, holds, allowed in _RANGES:
        _require(holds(_get(config, key)), key, _get(config, key), allowed)
    for term, weight in config.loss.weights.items():
        _require(
            math.isfinite(weight) and weight >= 0, f"loss.weights.{term}", weight, "a finite number >= 0"
        )
    resolve_caf_weights(config.loss.caf_weights, len(config.data.modalities), config.seed)
    try:
        check_fractions(config.data.fractions)
    except ConfigError as err:
        raise ConfigError(f"config key data.fractions: {err}") from err
    _choice(config, "data.kind", DATA_KINDS)
    if config.data.kind == "paired":
        _check_paired(config)
    _check_batches(config)
    _check_optimizers(config)
    if config.loss.fusion_adversarial > 0 and not (
        config.loss.adversarial > 0 and config.stages.pretrain > 0 and leader_can_pretrain(config)
    ):
        raise ConfigError(
            f"config key loss.fusion_adversarial = {config.loss.fusion_adversarial!r}: the fusion "
            "stage's adversarial term needs the discriminators of an adversarial pre-training "
            "(loss.adversarial > 0, stages.pretrain > 0 and a leader with an autoencode pass)"
        )
    for family in families:
        _check_sizes(config, family)
    _refuse_forward_mode("bilevel.solver", solver_from_config(config), config)
    stage_one_from_config(config)
    if config.bilevel.monitor.every > 0:
        _refuse_forward_mode("bilevel.monitor.reference", monitor_reference(config), config)


def _refuse_forward_mode(key: str, solver: bilevel.Solver, config: ml_collections.ConfigDict) -> None:
    # The models' memory-lean layers are custom reverse rules (docs/conventions.md#memory), which
    # JAX cannot push a forward-mode tangent through. Only the CAF search's inner loop runs on a
    # network built of plain layers alone (CAF's dense fusion net; its task network is outside).
    plain = "search" in config and config.model.fusion == "caf_dense"
    if isinstance(solver, bilevel.UnrolledForward) and not plain:
        raise ConfigError(
            f"config key {key}: unrolled_forward differentiates the inner loop in forward mode, "
            "which the models' memory-lean layers (custom reverse rules) do not support; "
            "unrolled computes the same derivative in reverse mode"
        )


def require_segmentation_data(config: ml_collections.ConfigDict, verb: str) -> None:
    """Refuse a paired-image config in a verb that segments (``search``, ``sweep``, ``compare-solvers``).

    Raises:
        ConfigError: ``data.kind`` is not ``brats``, naming the key and ``verb``.
    """
    if config.data.kind != "brats":
        raise ConfigError(
            f"config key data.kind = {config.data.kind!r}: `fuse4seg {verb}` needs labelled segmentation "
            f"data ('brats'); paired images have no labels and train the leader alone (`fuse4seg train`)"
        )


def _check_paired(config: ml_collections.ConfigDict) -> None:
    """Paired data (``data.kind = "paired"``) trains and scores the leader alone, on two folders."""
    modalities = tuple(config.data.modalities)
    _require(len(modalities) == 2, "data.modalities", modalities, "two folder names under data.paired_dir")
    _require(bool(config.data.paired_dir), "data.paired_dir", config.data.paired_dir, "a folder of pairs")
    for kind in ("follower", "bilevel"):
        _require(
            config.stages[kind] == 0,
            f"stages.{kind}",
            config.stages[kind],
            "0 with data.kind = 'paired': pairs have no labels; only the leader's stages "
            "(pretrain, fusion) run",
        )
    _require(
        config.eval_input == "fused", "eval_input", config.eval_input, "'fused' with data.kind = 'paired'"
    )
    _require(
        config.data.synthetic_pairs >= 0,
        "data.synthetic_pairs",
        config.data.synthetic_pairs,
        "an integer >= 0",
    )
    if config.data.synthetic_pairs > 0:
        names = ", ".join("/".join(folder_names(kind)) for kind in SYNTHETIC_KINDS)
        _require(
            kind_of(modalities) is not None,
            "data.modalities",
            modalities,
            f"the folders of a synthetic kind ({names}) with data.synthetic_pairs > 0",
        )
        # VIF, one of the held-out scores, needs 41 pixels a side
        _require(
            config.data.synthetic_size >= 41,
            "data.synthetic_size",
            config.data.synthetic_size,
            "an integer >= 41",
        )


def _check_batches(config: ml_collections.ConfigDict) -> None:
    devices = sharding.make_mesh(config.mesh.data, config.mesh.model).shape[sharding.DATA]
    parts = config.batch.accumulation
    for key in BATCHES:
        value = _get(config, key)
        _require(
            value % devices == 0 and value % parts == 0,
            key,
            value,
            f"a multiple of the {devices} data-axis devices (mesh.data) and of batch.accumulation = {parts}",
        )


def _check_optimizers(config: ml_collections.ConfigDict) -> None:
    """Each parameter set's own optimiser keys (``optim.<set>.*``), as they resolve."""
    for parameter_set in PARAMETER_SETS:
        key = f"optim.{parameter_set}"
        own = config.optim[parameter_set]
        if own.name is not None:
            _choice(config, f"{key}.name", OPTIMIZERS)
        if own.schedule is not None:
            _choice(config, f"{key}.schedule", SCHEDULES)
        if own.weight_decay is not None:
            _require(own.weight_decay >= 0, f"{key}.weight_decay", own.weight_decay, "a number >= 0")
        _require(0 <= own.momentum < 1, f"{key}.momentum", own.momentum, "0 <= momentum < 1")
        _require(0 < own.decay_rate <= 1, f"{key}.decay_rate", own.decay_rate, "0 < decay_rate <= 1")
        stepped = optimizer_settings(config, parameter_set)["schedule"] == "step"
        _require(
            own.decay_every >= 1 if stepped else own.decay_every >= 0,
            f"{key}.decay_every",
            own.decay_every,
            "an integer >= 1 (the step schedule's interval)" if stepped else "an integer >= 0",
        )


def _check_sizes(config: ml_collections.ConfigDict, family: str) -> None:
    """Build the chosen model from shapes alone: its constructor checks its sizes."""
    name = config.model[family]
    arguments = model_arguments(config, family, len(config.data.modalities))
    try:
        nnx.eval_shape(lambda: models.build(family, name, rngs=nnx.Rngs(0), **arguments))
    except ConfigError as err:
        raise ConfigError(f"config key model.{family}_sizes.{name}: {err}") from err


def config_warnings(config: ml_collections.ConfigDict) -> list[str]:
    """Choices of a valid config that run but probably not as meant; each message names the key."""
    warnings = []
    if config.stages.pretrain > 0 and not leader_can_pretrain(config):
        pretrainable = [n for n in models.names("fusion") if models.has_method("fusion", n, "autoencode")]
        warnings.append(
            f"config key stages.pretrain = {config.stages.pretrain}: fusion model "
            f"{config.model.fusion!r} has no autoencode pass, so the pretrain stage is skipped "
            f"(leaders that pre-train: {', '.join(pretrainable)})"
        )
    if config.stages.unit != "steps":  # checked again once the run has counted its steps
        return warnings
    ema_steps = config.stages.fusion + config.stages.bilevel
    start_weight = config.bilevel.ema**ema_steps
    if ema_steps > 0 and config.eval_input == "fused" and start_weight > 0.1:
        warnings.append(
            f"config key bilevel.ema = {config.bilevel.ema}: after {ema_steps} leader steps the "
            f"evaluated (EMA) leader still weighs its starting point by {start_weight:.0%} "
            f"(ema ** steps), so the follower is scored on a leader it was not trained against; "
            f"a smaller bilevel.ema or more steps avoid that"
        )
    return warnings
