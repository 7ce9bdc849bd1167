"""The optax optimisers of the three parameter sets (pre-training, leader, follower)."""

from __future__ import annotations

import optax

from fuse4seg_jax.errors import ConfigError


def adamw(
    lr: float, steps: int, *, weight_decay: float, clip_norm: float = 0.0, schedule: str = "cosine"
) -> optax.GradientTransformation:
    """AdamW with a cosine (or constant) learning rate over ``steps`` updates and optional clipping.

    The paper trains both networks with AdamW (weight decay 1e-5) and cosine annealing.
    """
    if schedule == "cosine":
        lr_fn = optax.cosine_decay_schedule(lr, decay_steps=max(int(steps), 1))
    elif schedule == "constant":
        lr_fn = optax.constant_schedule(lr)
    else:
        raise ConfigError(f"unknown optim.schedule {schedule!r}; expected cosine or constant")
    opt = optax.adamw(lr_fn, weight_decay=weight_decay)
    return optax.chain(optax.clip_by_global_norm(clip_norm), opt) if clip_norm > 0 else opt
