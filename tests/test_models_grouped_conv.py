"""GroupedConv computes what nnx.Conv with feature_group_count does, with the same parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fuse4seg_jax.models.grouped_conv import GroupedConv, grouped_conv, native_conv, shifted_sum_conv


@pytest.mark.parametrize(
    "c_in, c_out, groups, k, padding",
    [
        (6, 6, 6, (3, 3), "SAME"),  # depthwise, as in MDTA / GDFN
        (4, 4, 4, (7, 7), "SAME"),  # ConvNeXt's 7x7 depthwise
        (4, 4, 4, (3, 3), "VALID"),  # the INN bottleneck, after its reflection pad
        (8, 8, 4, (3, 3), "SAME"),  # 2 channels per group (CDDFuse's base-block MLP)
        (4, 8, 2, (3, 5), "SAME"),  # several outputs per group
        (12, 12, 2, (3, 3), "SAME"),  # wide groups (36 channel pairs): matrix products per tap
    ],
)
def test_matches_flax_grouped_convolution(c_in, c_out, groups, k, padding):
    ours = GroupedConv(c_in, c_out, k, groups=groups, padding=padding, rngs=nnx.Rngs(0))
    ours.bias[...] = jax.random.normal(jax.random.key(2), (c_out,))
    reference = nnx.Conv(c_in, c_out, k, feature_group_count=groups, padding=padding, rngs=nnx.Rngs(1))
    assert reference.kernel[...].shape == ours.kernel[...].shape
    reference.kernel[...], reference.bias[...] = ours.kernel[...], ours.bias[...]
    x = jax.random.normal(jax.random.key(3), (2, 9, 8, c_in))
    np.testing.assert_allclose(ours(x), reference(x), rtol=1e-5, atol=1e-5)

    # both gradients: the reverse rule computes the input's and the kernel's by different means
    def reference_conv(x, kernel):
        return jax.lax.conv_general_dilated(
            x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups
        )

    def loss(conv, x, kernel):
        return jnp.sum(jnp.sin(conv(x, kernel)))

    kernel = ours.kernel[...]
    gx, gk = jax.grad(loss, argnums=(1, 2))(lambda x, k: grouped_conv(x, k, groups, padding), x, kernel)
    gx_ref, gk_ref = jax.grad(loss, argnums=(1, 2))(reference_conv, x, kernel)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gk, gk_ref, rtol=1e-4, atol=1e-4)


def test_rejects_kernels_that_do_not_fit_the_groups():
    with pytest.raises(ValueError, match="does not fit"):
        GroupedConv(6, 6, (2, 2), groups=6, rngs=nnx.Rngs(0))(jnp.zeros((1, 4, 4, 6)))


@pytest.mark.parametrize("c_in, c_out, groups", [(6, 6, 6), (8, 8, 4), (4, 8, 2)])
def test_the_cpu_and_accelerator_forms_agree(c_in, c_out, groups):
    # grouped_conv lowers shifted_sum_conv on CPU and native_conv elsewhere: both must agree.
    x = jax.random.normal(jax.random.key(0), (2, 9, 8, c_in))
    kernel = jax.random.normal(jax.random.key(1), (3, 5, c_in // groups, c_out))
    for pad in ((0, 0), (1, 2)):
        np.testing.assert_allclose(
            shifted_sum_conv(x, kernel, groups, pad), native_conv(x, kernel, groups, pad), atol=1e-5
        )
    lowered = jax.jit(lambda x, k: grouped_conv(x, k, groups, "VALID")).lower(x, kernel).as_text()
    assert "feature_group_count" not in lowered  # lowered for CPU: the shifted sum only


@pytest.mark.parametrize(
    "kernel_shape, groups, most",
    [((7, 7, 1, 16), 16, 14), ((3, 3, 2, 16), 8, 11)],  # as written: 98 and 28 activations
)
def test_backward_does_not_keep_every_shifted_copy(kernel_shape, groups, most):
    """Compiled temporaries of forward+backward through two convs, in activations of the input."""
    x = jax.ShapeDtypeStruct((2, 32, 32, 16), jnp.float32)
    kernel = jax.ShapeDtypeStruct(kernel_shape, jnp.float32)

    def loss(x, k):
        return jnp.sum(jnp.sin(grouped_conv(grouped_conv(x, k, groups), k, groups)))

    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, kernel).compile()
    activations = compiled.memory_analysis().temp_size_in_bytes / (2 * 32 * 32 * 16 * 4)
    assert activations <= most, activations
