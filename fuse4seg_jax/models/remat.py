"""Per-block rematerialisation: a block's activations recomputed in the backward pass.

With ``remat`` on, a model keeps only each block's input from its forward pass to its backward
pass and recomputes the block's inside there, one block at a time: memory for the backward pass
drops from all blocks' activations to the block inputs plus one block's activations, for about
one more forward pass of compute (``docs/conventions.md#memory``).
"""

from __future__ import annotations

import jax
from flax import nnx

from bilevel import schedule


def apply_block(block: nnx.Module, x: jax.Array, *, remat: bool) -> jax.Array:
    """``block(x)``, rematerialised in the backward pass when ``remat`` is true.

    Arguments:
        block: a stateless NNX module (parameters only), called on one array.
        x: its input.
        remat: recompute the block's activations in the backward pass instead of storing them.

    Returns:
        ``block(x)``; the same values either way.
    """
    if not remat:
        return block(x)
    graphdef, state = nnx.split(block)
    return schedule.checkpoint(lambda state, x: nnx.merge(graphdef, state)(x))(state, x)
