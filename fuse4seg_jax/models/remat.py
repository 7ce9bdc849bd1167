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


def apply_block(block: nnx.Module, x: jax.Array, *, remat: bool, method: str = "__call__") -> jax.Array:
    """``block.<method>(x)``, rematerialised in the backward pass when ``remat`` is true.

    Arguments:
        block: a stateless NNX module (parameters only).
        x: the input of its method.
        remat: recompute the method's activations in the backward pass instead of storing them.
        method: which method of ``block`` maps ``x`` (default: calling it).

    Returns:
        ``block.<method>(x)``; the same values either way.
    """
    if not remat:
        return getattr(block, method)(x)
    graphdef, state = nnx.split(block)
    return schedule.checkpoint(lambda state, x: getattr(nnx.merge(graphdef, state), method)(x))(state, x)
