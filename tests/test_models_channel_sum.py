"""channel_sum / per_channel: exact sums, the broadcast's derivatives, and no windowed reduction."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fuse4seg_jax.models.channel_sum import channel_sum, per_channel


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (3, 37, 41, 2), (4, 3), (1, 1, 1, 5)])
def test_channel_sum_is_the_sum_over_every_axis_but_the_last(shape):
    t = jax.random.normal(jax.random.key(0), shape)
    want = np.asarray(t, np.float64).reshape(-1, shape[-1]).sum(axis=0)
    np.testing.assert_allclose(jax.jit(channel_sum)(t), want, rtol=1e-5, atol=1e-5)


def test_per_channel_has_the_derivatives_of_a_broadcast():
    v = jnp.array([0.5, -1.0, 2.0])
    weights = jax.random.normal(jax.random.key(1), (2, 4, 5, 3))

    def loss(v, broadcast):
        return jnp.sum(jnp.sin(broadcast(v) * weights))

    ours, plain = (lambda v: per_channel(v, weights.shape)), (lambda v: jnp.broadcast_to(v, weights.shape))
    np.testing.assert_allclose(jax.grad(loss)(v, ours), jax.grad(loss)(v, plain), rtol=1e-5, atol=1e-6)
    # forward-over-reverse, as the implicit solvers' Hessian-vector products
    tangent = jnp.array([1.0, 0.0, -2.0])
    hvp = [jax.jvp(jax.grad(lambda v, b=b: loss(v, b)), (v,), (tangent,))[1] for b in (ours, plain)]
    np.testing.assert_allclose(*hvp, rtol=1e-5, atol=1e-6)


def test_a_per_channel_gradient_reduces_no_full_map_in_windows():
    # XLA:CPU rewrites a plain sum over an axis longer than 32 into a slow reduce-window over the
    # whole map; per_channel's may only window the partial sums, 32 times smaller.
    x = jax.ShapeDtypeStruct((2, 64, 64, 8), jnp.float32)
    v = jax.ShapeDtypeStruct((8,), jnp.float32)

    def largest_windowed(broadcast):
        grad = jax.jit(jax.grad(lambda v, x: jnp.sum(jnp.tanh(x * broadcast(v, x.shape)))))
        text = grad.lower(v, x).compile().as_text()
        shapes = re.findall(r"f32\[([\d,]+)\][^ ]* reduce-window\(", text) + re.findall(
            r"reduce-window_computation[.\d]* \(param_0[.\d]*: f32\[([\d,]+)\]", text
        )
        return max((math.prod(int(d) for d in s.split(",")) for s in shapes), default=0)

    assert largest_windowed(jnp.broadcast_to) == 2 * 64 * 64 * 8  # the rewrite this module avoids
    assert largest_windowed(per_channel) <= 2 * 64 * 64 * 8 // 32
