"""The stride-1 'SAME' convolution whose reverse pass is written in XLA's canonical order."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fuse4seg_jax.models.same_conv import SameConv, same_conv


def _plain(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _kernel_gradient_steps(conv, steps=3):
    """A loop of gradient steps on a kernel, compiled as one ``fori_loop``."""

    def step(kernel, x):
        return kernel - 1e-3 * jax.grad(lambda k: jnp.sum(jnp.sin(conv(x, k))))(kernel)

    return jax.jit(lambda kernel, x: jax.lax.fori_loop(0, steps, lambda _, k: step(k, x), kernel))


def test_inside_a_loop_every_convolution_is_in_the_canonical_order():
    """The property the module exists for: XLA:CPU runs other orders slowly inside loop bodies."""
    kernel = jax.random.normal(jax.random.key(0), (3, 3, 4, 5))
    x = jax.random.normal(jax.random.key(1), (2, 6, 7, 4))
    hlo = _kernel_gradient_steps(same_conv).lower(kernel, x).compile().as_text()
    labels = set(re.findall(r"dim_labels=([^,\s]+)", hlo))
    assert labels == {"b01f_01io->b01f"}, labels
    ours, plain = (_kernel_gradient_steps(conv)(kernel, x) for conv in (same_conv, _plain))
    np.testing.assert_allclose(ours, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_forward_over_reverse_products_match_the_plain_convolution(size):
    kernel = jax.random.normal(jax.random.key(0), (size, size, 3, 2))
    x = jax.random.normal(jax.random.key(1), (2, 5, 6, 3))
    tangent = jax.random.normal(jax.random.key(2), kernel.shape)

    def hvp(conv):
        grad = jax.grad(lambda k, x: jnp.sum(jnp.sin(conv(x, k))), argnums=(0, 1))
        return jax.jit(lambda k: jax.jvp(lambda k: grad(k, x), (k,), (tangent,))[1])(kernel)

    for ours, reference in zip(hvp(same_conv), hvp(_plain), strict=True):
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5 * float(np.max(np.abs(reference))))


def test_only_the_plain_layout_is_accepted():
    with pytest.raises(ValueError, match="stride 1.*strides"):
        SameConv(3, 4, (3, 3), strides=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="padding"):
        SameConv(3, 4, (3, 3), padding="VALID", rngs=nnx.Rngs(0))
