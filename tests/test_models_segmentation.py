"""The segmentation follower: shapes, size errors, statelessness, gradients, block sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fuse4seg_jax import models
from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.models.convnext_unet import ConvNeXtBlock, GlobalResponseNorm

TINY = dict(widths=(4, 8), depths=(1, 1), bottleneck_heads=2)


@pytest.fixture(scope="module")
def tiny_rgb():
    return models.create("segmentation", "convnext_unet", key=jax.random.key(0), in_channels=3, **TINY)


@pytest.fixture(scope="module")
def cross_entropy_grad(tiny_rgb):
    """``grad(params, x, labels)``: the pixel cross-entropy's gradient, compiled once per module."""
    model, _ = tiny_rgb

    def loss(p, x, labels):
        logp = jax.nn.log_softmax(model.apply(p, x))
        return -jnp.mean(jnp.take_along_axis(logp, labels[..., None], axis=-1))

    return jax.jit(jax.grad(loss))


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("size", [(8, 8), (6, 10), (4, 2)])
def test_logits_at_input_resolution(in_channels, size):
    model, params = models.create(
        "segmentation", "convnext_unet", key=jax.random.key(0), in_channels=in_channels, **TINY
    )
    x = jax.ShapeDtypeStruct((2, *size, in_channels), jnp.float32)
    logits = jax.eval_shape(model.apply, params, x)
    assert logits.shape == (2, *size, 4)
    assert logits.dtype == jnp.float32


def test_size_not_divisible_names_size_and_divisor(tiny_rgb):
    model, params = tiny_rgb
    with pytest.raises(ConfigError, match=r"9x12 is not divisible by 2"):
        model.apply(params, jnp.zeros((1, 9, 12, 3)))


def test_wrong_channel_count_is_a_config_error(tiny_rgb):
    model, params = tiny_rgb
    with pytest.raises(ConfigError, match=r"in_channels=3"):
        model.apply(params, jnp.zeros((1, 8, 8, 1)))


def test_heads_must_divide_last_width():
    with pytest.raises(ConfigError, match="bottleneck_heads 3 must divide the last width 8"):
        models.create(
            "segmentation",
            "convnext_unet",
            key=jax.random.key(0),
            widths=(4, 8),
            depths=(1, 1),
            bottleneck_heads=3,
        )


def test_widths_and_depths_must_match():
    with pytest.raises(ConfigError, match="widths"):
        models.create("segmentation", "convnext_unet", key=jax.random.key(0), widths=(4, 8), depths=(1,))


def test_samples_are_segmented_independently(tiny_rgb):
    # No batch statistics: a sample's logits must not depend on the rest of the batch.
    model, params = tiny_rgb
    x = jax.random.uniform(jax.random.key(2), (2, 6, 10, 3))
    other = x.at[0].set(jax.random.uniform(jax.random.key(3), (6, 10, 3)))
    apply = jax.jit(model.apply)
    logits, logits_other = apply(params, x), apply(params, other)
    assert bool(jnp.all(jnp.isfinite(logits)))
    assert not np.allclose(logits[0], logits_other[0])
    np.testing.assert_allclose(logits[1], logits_other[1], rtol=1e-5, atol=1e-5)


def test_gradients_are_finite_and_reach_every_parameter(tiny_rgb, cross_entropy_grad):
    _, params = tiny_rgb
    x = jax.random.uniform(jax.random.key(3), (2, 8, 8, 3))
    labels = jax.random.randint(jax.random.key(4), (2, 8, 8), 0, 4)
    grads = cross_entropy_grad(params, x, labels)
    leaves = jax.tree.leaves(jax.device_get(grads))
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert all(np.any(g != 0) for g in leaves)


def test_convnext_block_size_and_near_identity_at_init():
    c = 4
    block = ConvNeXtBlock(c, rngs=nnx.Rngs(0))
    # depthwise 7x7 + bias, LayerNorm scale + bias, C->4C and 4C->C with biases, layer-scale.
    expected = (49 * c + c) + 2 * c + (4 * c * c + 4 * c) + (4 * c * c + c) + c
    pure, params = models.split_module(block)
    assert models.count_params(params) == expected
    x = jax.random.normal(jax.random.key(5), (1, 9, 9, c))
    # layer-scale 1e-6 makes every residual branch start close to zero.
    assert float(jnp.max(jnp.abs(jax.jit(pure.apply)(params, x) - x))) < 1e-4


def test_convnext_v2_block_swaps_layer_scale_for_global_response_norm():
    c = 4
    v1 = models.count_params(models.split_module(ConvNeXtBlock(c, rngs=nnx.Rngs(0)))[1])
    pure, params = models.split_module(ConvNeXtBlock(c, block="v2", rngs=nnx.Rngs(0)))
    assert "layer_scale" not in params and set(params["grn"]) == {"gamma", "beta"}
    assert models.count_params(params) == v1 - c + 2 * 4 * c  # GRN on the 4C hidden width
    # GRN by hand on random values: x + gamma * x * g_c / (mean_c g + eps) + beta
    grn = GlobalResponseNorm(3)
    grn.gamma[...] = jnp.asarray([0.5, -1.0, 2.0])
    grn.beta[...] = jnp.asarray([0.1, 0.0, -0.2])
    x = np.random.default_rng(0).normal(size=(2, 4, 5, 3)).astype(np.float32)
    g = np.sqrt((x.astype(np.float64) ** 2).sum(axis=(1, 2), keepdims=True))
    expected = (
        x + np.asarray([0.5, -1.0, 2.0]) * x * g / (g.mean(-1, keepdims=True) + 1e-6) + [0.1, 0.0, -0.2]
    )
    np.testing.assert_allclose(np.asarray(grn(jnp.asarray(x))), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="block 'v3'"):
        models.build("segmentation", "convnext_unet", rngs=nnx.Rngs(0), block="v3", **TINY)


def test_gradients_stay_moderate_on_a_zero_background(tiny_rgb, cross_entropy_grad):
    # skull-stripped MRI is exactly 0 outside the brain; with zero conv biases the LayerNorms there
    # divide by sqrt(eps) and the stem's gradient norm reached ~1e7-1e8 at initialisation.
    _, params = tiny_rgb
    x = jnp.zeros((2, 8, 8, 3)).at[:, 2:6, 2:6].set(0.5)
    labels = jnp.zeros((2, 8, 8), jnp.int32).at[:, 3:5, 3:5].set(2)
    grads = cross_entropy_grad(params, x, labels)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads)) < 100.0
