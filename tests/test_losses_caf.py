"""CAF's loss search space: saliency masks, the 15 terms, softmax weights, perceptual gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fuse4seg_jax.losses import (
    CAF_TERM_NAMES,
    caf_loss,
    caf_term_names,
    caf_weights,
    gradient_loss,
    init_caf_logits,
    saliency_masks,
    ssim_loss,
    visual_saliency_map,
)

RNG = np.random.default_rng(0)
SOURCES = RNG.random((1, 11, 11, 2)).astype(np.float32)  # 11x11: the smallest SSIM accepts
FUSED = RNG.random((1, 11, 11, 1)).astype(np.float32)
KERNEL = RNG.standard_normal((3, 3, 1, 4)).astype(np.float32)


def conv_features(x):
    """A fixed two-layer feature network standing in for VGG."""
    first = jax.nn.relu(
        jax.lax.conv_general_dilated(x, KERNEL, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    )
    return [first, jnp.mean(first, axis=(1, 2))]


def identity_features(x):
    return x


loss_with_conv = jax.jit(lambda beta, f, s: caf_loss(beta, f, s, conv_features))
loss_with_identity = jax.jit(lambda beta, f, s: caf_loss(beta, f, s, identity_features))


def test_vsm_on_hand_computed_image():
    # Grey levels (0, 0, 0, 255): S(0) = 255 * 1, S(255) = 255 * 3, then divided by the max.
    image = np.array([0.0, 0.0, 0.0, 1.0], np.float32).reshape(1, 2, 2, 1)
    expected = np.array([1 / 3, 1 / 3, 1 / 3, 1.0], np.float32).reshape(1, 2, 2, 1)
    np.testing.assert_allclose(jax.jit(visual_saliency_map)(image), expected, rtol=1e-6)


def test_saliency_masks_share_each_pixel_and_are_uniform_where_nothing_is_salient():
    masks = jax.jit(saliency_masks)(SOURCES)
    np.testing.assert_allclose(jnp.sum(masks, axis=-1), 1.0, rtol=1e-6)
    flat = np.full((1, 4, 4, 3), 0.4, np.float32)
    np.testing.assert_allclose(jax.jit(saliency_masks)(flat), 1 / 3, rtol=1e-6)


def test_search_space_has_fifteen_terms_and_equal_initial_weights():
    assert len(CAF_TERM_NAMES) == 15 and len(set(CAF_TERM_NAMES)) == 15
    beta = init_caf_logits()
    assert beta.shape == (15,) and float(jnp.max(jnp.abs(beta))) == 0.0
    np.testing.assert_allclose(caf_weights(beta), 1 / 15, rtol=1e-6)
    random_beta = RNG.standard_normal(15).astype(np.float32)
    assert float(jnp.sum(caf_weights(random_beta))) == pytest.approx(1.0, rel=1e-6)


def test_loss_is_the_fixed_term_plus_the_softmax_weighted_terms():
    beta = RNG.standard_normal(15).astype(np.float32)
    loss, terms = loss_with_conv(beta, FUSED, SOURCES)
    weights = np.exp(beta) / np.sum(np.exp(beta))
    searched = np.array([terms[name] for name in CAF_TERM_NAMES])
    assert set(terms) == {*CAF_TERM_NAMES, "saliency_mse"}
    assert float(loss) == pytest.approx(float(terms["saliency_mse"]) + weights @ searched, rel=1e-5)


def test_terms_on_hand_computed_inputs():
    # Sources constant 1 and 0 (no saliency, masks 1/2), fused constant 0.5.
    ones = np.ones((1, 11, 11, 1), np.float32)
    sources = np.concatenate([ones, 0 * ones], -1)
    fused = 0.5 * ones
    _, terms = loss_with_identity(init_caf_logits(), fused, sources)
    expected = {
        "l1_0": 0.5, "l1_1": 0.5, "l1_max": 0.5,
        "saliency_l1_0": 0.25, "saliency_l1_1": 0.25,
        "mse_0": 0.25, "mse_1": 0.25, "mse_max": 0.25,
        "perceptual_0": 0.05, "perceptual_1": 0.05,  # 0.1 * L1 of identity features
        "saliency_mse": 0.0625,
    }  # fmt: skip
    for name, value in expected.items():
        assert float(terms[name]) == pytest.approx(value, rel=1e-6), name
    luminance = (2 * 0.5 * 1.0 + 1e-4) / (0.25 + 1.0 + 1e-4)
    assert float(terms["ssim_0"]) == pytest.approx((1 - luminance) / 2, rel=1e-4)
    luminance = 1e-4 / (0.25 + 1e-4)
    assert float(terms["ssim_1"]) == pytest.approx((1 - luminance) / 2, rel=1e-4)


def test_gradient_and_ssim_terms_agree_with_the_standalone_losses():
    _, terms = loss_with_conv(init_caf_logits(), FUSED, SOURCES)
    assert float(terms["gradient_max"]) == pytest.approx(float(gradient_loss(FUSED, SOURCES)), rel=1e-6)
    single = float(gradient_loss(FUSED, SOURCES[..., 1:]))
    assert float(terms["gradient_1"]) == pytest.approx(single, rel=1e-6)
    ssim0 = float(jax.jit(ssim_loss)(FUSED, SOURCES[..., :1]))
    assert float(terms["ssim_0"]) == pytest.approx(ssim0, rel=1e-6)


def test_perceptual_term_sends_gradient_to_the_fused_image():
    # The CAF reference code detached the features, so this gradient was identically zero there.
    def perceptual(fused):
        return caf_loss(init_caf_logits(), fused, SOURCES, conv_features)[1]["perceptual_0"]

    g = jax.jit(jax.grad(perceptual))(FUSED)
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.max(jnp.abs(g))) > 0


def test_gradients_in_beta_and_fused_are_finite_even_for_constant_images():
    grad = jax.jit(jax.grad(lambda b, f, s: caf_loss(b, f, s, conv_features)[0], argnums=(0, 1)))
    flat = np.full_like(FUSED, 0.5)
    for fused, sources in [(FUSED, SOURCES), (flat, np.concatenate([flat, flat], -1))]:
        g_beta, g_fused = grad(init_caf_logits(), fused, sources)
        assert bool(jnp.all(jnp.isfinite(g_beta))) and bool(jnp.all(jnp.isfinite(g_fused)))
    assert float(jnp.abs(jnp.sum(g_beta))) < 1e-6  # softmax weights: beta + c changes nothing


def test_more_sources_extend_the_search_space_and_one_source_is_refused():
    names = caf_term_names(3)
    assert len(names) == 21 and names[3] == "l1_max"
    three = RNG.random((1, 11, 11, 3)).astype(np.float32)
    loss, terms = loss_with_identity(init_caf_logits(3), FUSED, three)
    assert set(terms) == {*names, "saliency_mse"} and bool(jnp.isfinite(loss))
    with pytest.raises(ValueError, match="at least 2 sources"):
        caf_loss(init_caf_logits(), FUSED, SOURCES[..., :1], identity_features)
    with pytest.raises(ValueError, match=r"expected \(21,\)"):
        caf_loss(init_caf_logits(), FUSED, three, identity_features)


def test_float64_inputs_give_the_float32_values():
    _, terms32 = loss_with_identity(init_caf_logits(), FUSED, SOURCES)
    with jax.enable_x64(True):
        beta = np.zeros((15,), np.float64)
        fused, sources = FUSED.astype(np.float64), SOURCES.astype(np.float64)
        _, terms64 = jax.jit(lambda b, f, s: caf_loss(b, f, s, identity_features))(beta, fused, sources)
        assert all(terms64[name].dtype == np.float64 for name in terms64)
    for name, value in terms32.items():
        assert float(terms64[name]) == pytest.approx(float(value), rel=1e-4, abs=1e-7), name
