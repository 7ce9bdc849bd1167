"""Sobel gradient magnitude, the spatial gradient loss and the reconstruction anchor."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fuse4seg_jax.losses import gradient_loss, reconstruction_loss, sobel_magnitude

sobel = jax.jit(sobel_magnitude, static_argnames="pad_mode")
grad_loss = jax.jit(gradient_loss, static_argnames="pad_mode")
recon = jax.jit(reconstruction_loss)

IMPULSE = np.zeros((1, 3, 3, 1), np.float32)
IMPULSE[0, 1, 1, 0] = 1.0


def image(values):
    return np.asarray(values, np.float32)[None, :, :, None]


def test_sobel_of_an_impulse():
    # Each neighbour sees one kernel tap: |1| + |1| at corners, |2| + 0 on the edges.
    expected = np.array([[2, 2, 2], [2, 0, 2], [2, 2, 2]], np.float32)
    np.testing.assert_array_equal(sobel(IMPULSE)[0, :, :, 0], expected)


def test_sobel_of_a_ramp_is_eight_times_its_slope_inside():
    ramp = image(np.tile(0.1 * np.arange(6), (5, 1)))
    np.testing.assert_allclose(sobel(ramp)[0, 1:-1, 1:-1, 0], 0.8, rtol=1e-5)


def test_padding_decides_whether_a_constant_image_has_edges():
    flat = np.full((1, 4, 5, 1), 0.7, np.float32)
    assert float(jnp.max(sobel(flat, pad_mode="edge"))) == pytest.approx(0.0, abs=1e-6)
    zero_padded = sobel(flat)
    assert float(jnp.max(zero_padded[0, 1:-1, 1:-1])) == pytest.approx(0.0, abs=1e-6)
    assert float(zero_padded[0, 0, 2, 0]) == pytest.approx(4 * 0.7, rel=1e-6)  # border row


def test_gradient_loss_on_hand_computed_input():
    fused = np.zeros((1, 3, 3, 1), np.float32)
    sources = np.concatenate([IMPULSE, np.zeros_like(IMPULSE)], axis=-1)
    assert grad_loss(fused, sources) == pytest.approx(16 / 9, rel=1e-6)


def test_gradient_loss_is_zero_when_fused_has_the_largest_source_gradient():
    rng = np.random.default_rng(0)
    textured = rng.random((2, 8, 8, 1)).astype(np.float32)
    assert grad_loss(textured, np.concatenate([textured, 0 * textured], -1)) == 0.0
    flat = np.full_like(textured, 0.3)
    sources = np.concatenate([flat, textured], -1)
    assert grad_loss(textured, sources, pad_mode="edge") == pytest.approx(0.0, abs=1e-6)


def test_gradient_loss_gradients_are_finite_at_constant_images():
    flat = np.full((1, 6, 6, 1), 0.5, np.float32)
    g = jax.jit(jax.grad(gradient_loss))(flat, np.concatenate([flat, flat], -1))
    assert bool(jnp.all(jnp.isfinite(g)))


def test_reconstruction_loss_on_hand_computed_inputs():
    zeros, ones = np.zeros((1, 2, 2, 1), np.float32), np.ones((1, 2, 2, 1), np.float32)
    assert recon(0.5 * ones, np.concatenate([zeros, ones], -1)) == 0.0
    assert recon(ones, np.concatenate([zeros, 0.5 * ones], -1)) == pytest.approx(0.5625)
    three = np.concatenate([zeros, ones, ones], -1)  # mean 2/3
    assert recon(zeros, three) == pytest.approx(4 / 9, rel=1e-6)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match=r"fused must be \(B, H, W, 1\)"):
        gradient_loss(np.zeros((1, 4, 4, 2), np.float32), np.zeros((1, 4, 4, 2), np.float32))
    with pytest.raises(ValueError, match="same B, H, W"):
        reconstruction_loss(np.zeros((1, 4, 4, 1), np.float32), np.zeros((1, 4, 5, 2), np.float32))
