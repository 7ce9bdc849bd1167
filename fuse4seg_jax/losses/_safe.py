"""Square roots whose gradient stays finite where the argument is zero."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def safe_sqrt(x: jax.Array) -> jax.Array:
    """``sqrt(x)`` for ``x >= 0`` with gradient 0 (not inf, hence no NaN) at ``x == 0``.

    Needed wherever a loss takes a norm that is exactly zero on a constant image or a perfect
    prediction: the double ``where`` keeps the inf of ``d sqrt / dx`` at 0 out of the backward pass.
    """
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)
