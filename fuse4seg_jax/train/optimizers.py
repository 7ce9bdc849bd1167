"""The optax optimisers of the four parameter sets: pre-training, discriminators, leader, follower.

Each set's optimiser is resolved from the config by :func:`optimizer_settings`: its own keys
``optim.<set>.*`` where they are set, else the shared ones (``optim.optimizer``,
``optim.schedule``, ``optim.weight_decay``); its learning rate is ``optim.<set>_lr``
(``fuse4seg_jax.train.defaults`` documents every key).
"""

from __future__ import annotations

from typing import Any

import ml_collections
import optax

from fuse4seg_jax.errors import ConfigError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant", "step")
# The parameter sets with an optimiser of their own (``optim.<set>`` and ``optim.<set>_lr``).
PARAMETER_SETS = ("leader", "follower", "pretrain", "discriminator")
# Sets that inherit optim.weight_decay; the pre-training sets default to none (CDDFuse phase I).
_DECAYED = ("leader", "follower")


def make_optimizer(
    name: str,
    lr: float,
    steps: int,
    *,
    weight_decay: float,
    clip_norm: float = 0.0,
    schedule: str = "cosine",
    eps_root: float = 0.0,
    momentum: float = 0.9,
    decay_rate: float = 0.5,
    decay_every: int = 0,
) -> optax.GradientTransformation:
    """``name`` with a cosine, constant or step learning rate over ``steps`` updates, optional clipping.

    Arguments:
        name: ``adamw`` (the paper: AdamW, weight decay 1e-5, cosine; with weight decay 0 it is
            Adam, as Fuse4Seg v1's fusion network) or ``sgd`` (heavy-ball ``momentum`` with
            decoupled weight decay, as DARTS' inner optimiser and Fuse4Seg v1's segmentation
            network; also what makes runs on different device counts agree to float32 precision,
            since Adam turns the rounding noise of near-zero gradients into full-size steps of
            either sign).
        lr: peak (initial) learning rate.
        steps: updates the cosine schedule spans.
        weight_decay: decoupled weight decay.
        clip_norm: clip gradients to this global norm first (0: no clipping).
        schedule: ``cosine`` (to 0 over ``steps``), ``constant``, or ``step`` (``lr`` times
            ``decay_rate`` after every ``decay_every`` updates, PyTorch's StepLR).
        eps_root: added under Adam's square root; > 0 keeps the derivative of a step finite
            where a gradient entry is exactly 0 (the CAF search differentiates the fusion step).
        momentum: SGD's momentum (unused by ``adamw``).
        decay_rate, decay_every: the ``step`` schedule's factor and interval in updates (>= 1).

    Raises:
        ConfigError: an unknown name or schedule, or a ``step`` schedule without an interval.
    """
    if schedule == "cosine":
        lr_fn = optax.cosine_decay_schedule(lr, decay_steps=max(int(steps), 1))
    elif schedule == "constant":
        lr_fn = optax.constant_schedule(lr)
    elif schedule == "step":
        if decay_every < 1:
            raise ConfigError(f"the step schedule needs decay_every >= 1 updates, got {decay_every}")
        lr_fn = optax.exponential_decay(lr, int(decay_every), decay_rate, staircase=True)
    else:
        raise ConfigError(f"unknown optim.schedule {schedule!r}; expected one of {SCHEDULES}")
    if name == "adamw":
        opt = optax.adamw(lr_fn, weight_decay=weight_decay, eps_root=eps_root)
    elif name == "sgd":
        opt = optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr_fn, momentum=momentum))
    else:
        raise ConfigError(f"unknown optim.optimizer {name!r}; expected one of {OPTIMIZERS}")
    return optax.chain(optax.clip_by_global_norm(clip_norm), opt) if clip_norm > 0 else opt


def optimizer_settings(config: ml_collections.ConfigDict, parameter_set: str) -> dict[str, Any]:
    """The resolved optimiser of one parameter set: ``optim.<set>.*`` over the shared keys.

    Arguments:
        config: a config from ``configs/``.
        parameter_set: one of :data:`PARAMETER_SETS`.

    Returns:
        ``{name, lr, schedule, weight_decay, clip_norm, momentum, decay_rate, decay_every}``, the
        keyword arguments of :func:`make_optimizer` besides ``steps``. An unset (``None``)
        ``optim.<set>.name`` / ``schedule`` takes ``optim.optimizer`` / ``optim.schedule``; an
        unset ``weight_decay`` takes ``optim.weight_decay`` for the leader and the follower and 0
        for the pre-training sets.
    """
    o = config.optim
    own = o[parameter_set]

    def inherit(value: Any, shared: Any) -> Any:
        return shared if value is None else value

    shared_decay = o.weight_decay if parameter_set in _DECAYED else 0.0
    return {
        "name": inherit(own.name, o.optimizer),
        "lr": o[f"{parameter_set}_lr"],
        "schedule": inherit(own.schedule, o.schedule),
        "weight_decay": float(inherit(own.weight_decay, shared_decay)),
        "clip_norm": o.clip_norm,
        "momentum": own.momentum,
        "decay_rate": own.decay_rate,
        "decay_every": int(own.decay_every),
    }


def optimizer_for(
    config: ml_collections.ConfigDict, parameter_set: str, steps: int
) -> optax.GradientTransformation:
    """:func:`make_optimizer` with :func:`optimizer_settings` of ``parameter_set`` over ``steps`` updates."""
    settings = optimizer_settings(config, parameter_set)
    return make_optimizer(settings.pop("name"), settings.pop("lr"), steps, **settings)
