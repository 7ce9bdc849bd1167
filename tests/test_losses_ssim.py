"""SSIM (11x11 Gaussian, sigma 1.5, 'valid') and the SSIM loss (1 - SSIM) / 2."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from fuse4seg_jax.losses import ssim, ssim_loss

ssim_jit = jax.jit(ssim)
loss_jit = jax.jit(ssim_loss)


def test_ssim_of_constant_images_is_the_luminance_term():
    # One valid window; zero variances, so SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1).
    a = np.full((1, 11, 11, 1), 0.5, np.float32)
    b = np.full((1, 11, 11, 1), 0.25, np.float32)
    expected = (2 * 0.5 * 0.25 + 1e-4) / (0.25 + 0.0625 + 1e-4)
    assert ssim_jit(a, b) == pytest.approx(expected, rel=1e-5)


def test_ssim_matches_scikit_image_with_gaussian_weights():
    rng = np.random.default_rng(0)
    a = rng.random((16, 18)).astype(np.float32)
    b = np.clip(a + 0.2 * rng.standard_normal((16, 18)), 0, 1).astype(np.float32)
    reference = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )
    assert ssim_jit(a[None, :, :, None], b[None, :, :, None]) == pytest.approx(reference, abs=1e-5)


def test_ssim_loss_is_zero_on_identical_images_and_halved():
    rng = np.random.default_rng(1)
    a = rng.random((2, 12, 13, 2)).astype(np.float32)
    b = rng.random((2, 12, 13, 2)).astype(np.float32)
    assert loss_jit(a, a) == pytest.approx(0.0, abs=1e-6)
    assert loss_jit(a, b) == pytest.approx((1 - float(ssim_jit(a, b))) / 2, abs=1e-7)


def test_ssim_gradients_are_finite_at_constant_and_identical_images():
    grad = jax.jit(jax.grad(ssim_loss, argnums=(0, 1)))
    flat = np.full((1, 12, 12, 1), 0.5, np.float32)
    textured = np.random.default_rng(2).random((1, 12, 12, 1)).astype(np.float32)
    for a, b in [(flat, flat), (flat, textured), (textured, textured), (0 * flat, 0 * flat)]:
        for g in grad(a, b):
            assert bool(jnp.all(jnp.isfinite(g)))


def test_images_smaller_than_the_window_are_refused():
    small = np.zeros((1, 10, 16, 1), np.float32)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(small, small)
