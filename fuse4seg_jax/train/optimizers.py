"""The optax optimisers of the three parameter sets (pre-training, leader, follower)."""

from __future__ import annotations

import optax

from fuse4seg_jax.errors import ConfigError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")


def make_optimizer(
    name: str,
    lr: float,
    steps: int,
    *,
    weight_decay: float,
    clip_norm: float = 0.0,
    schedule: str = "cosine",
    eps_root: float = 0.0,
) -> optax.GradientTransformation:
    """``name`` with a cosine (or constant) learning rate over ``steps`` updates, optional clipping.

    Arguments:
        name: ``adamw`` (the paper: AdamW, weight decay 1e-5, cosine) or ``sgd`` (momentum 0.9 with
            decoupled weight decay, as DARTS' inner optimiser; also what makes runs on different
            device counts agree to float32 precision, since Adam turns the rounding noise of
            near-zero gradients into full-size steps of either sign).
        lr: peak learning rate.
        steps: updates the schedule spans.
        weight_decay: decoupled weight decay.
        clip_norm: clip gradients to this global norm first (0: no clipping).
        schedule: ``cosine`` or ``constant``.
        eps_root: added under Adam's square root; > 0 keeps the derivative of a step finite
            where a gradient entry is exactly 0 (the CAF search differentiates the fusion step).
    """
    if schedule == "cosine":
        lr_fn = optax.cosine_decay_schedule(lr, decay_steps=max(int(steps), 1))
    elif schedule == "constant":
        lr_fn = optax.constant_schedule(lr)
    else:
        raise ConfigError(f"unknown optim.schedule {schedule!r}; expected one of {SCHEDULES}")
    if name == "adamw":
        opt = optax.adamw(lr_fn, weight_decay=weight_decay, eps_root=eps_root)
    elif name == "sgd":
        opt = optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr_fn, momentum=0.9))
    else:
        raise ConfigError(f"unknown optim.optimizer {name!r}; expected one of {OPTIMIZERS}")
    return optax.chain(optax.clip_by_global_norm(clip_norm), opt) if clip_norm > 0 else opt
