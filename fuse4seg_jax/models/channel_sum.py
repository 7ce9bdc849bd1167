"""Sums over every axis but the channels, in the form XLA:CPU runs fast.

XLA:CPU rewrites a sum over any axis longer than 32 into a windowed reduction (for its rounding),
which runs slowly and reads its operand only after writing it out in full. Every per-channel
parameter meets such sums in its gradient: a bias or scale broadcast over the pixels of a
``(B, H, W, C)`` map has the sum of its cotangent (times the scaled input) over them, and a
depthwise kernel tap the sum of its window times the cotangent. On the paper-size networks
these sums took 41 % (leader) and 44 % (follower) of the forward+backward's thread time
(``docs/conventions.md#speed-on-cpu``).

- :func:`channel_sum` ``(t) -> (C,)``: two reductions, the first over chunks of at most 32.
- :func:`per_channel` ``(v, shape)``: ``v: (C,)`` broadcast to ``shape``, whose gradient is the
  :func:`channel_sum` of the cotangent.
- :func:`add_bias` ``(y, bias)``: a layer's optional bias added through :func:`per_channel`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

# The longest axis XLA:CPU sums without the windowed rewrite.
_CHUNK = 32


def channel_sum(t: jax.Array) -> jax.Array:
    """``t: (..., C) -> (C,)``, the sum over every axis but the last.

    The first reduction is over consecutive chunks of at most 32 elements (along the last
    spatial axis, as laid out) and fuses with whatever computes ``t``; a barrier keeps XLA from
    merging it with the second, over an array as many times smaller as the chunk is long (the
    largest divisor of the element count up to 32: a prime count above 32 gets no speed-up).
    """
    c = t.shape[-1]
    flat = t.reshape(-1, c)
    chunk = max(d for d in range(1, min(flat.shape[0], _CHUNK) + 1) if flat.shape[0] % d == 0)
    partial = jnp.sum(flat.reshape(-1, chunk, c), axis=1)
    return jnp.sum(jax.lax.optimization_barrier(partial), axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def per_channel(v: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``v: (C,)`` broadcast to ``shape: (..., C)``; reverse mode sums by :func:`channel_sum`."""
    return jnp.broadcast_to(v, shape)


def _per_channel_fwd(v, shape):
    return jnp.broadcast_to(v, shape), None


def _per_channel_bwd(shape, _, cotangent):
    return (channel_sum(cotangent),)


per_channel.defvjp(_per_channel_fwd, _per_channel_bwd)


def add_bias(y: jax.Array, bias: nnx.Param | None) -> jax.Array:
    """``y: (..., C)`` plus a layer's bias ``(C,)`` in ``y``'s dtype, broadcast by :func:`per_channel`;
    ``bias`` None: ``y``."""
    return y if bias is None else y + per_channel(bias[...].astype(y.dtype), y.shape)
