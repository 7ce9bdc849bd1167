"""SMFNet's Gram intensity loss, Lovasz-softmax and decomposition loss with interaction term."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fuse4seg_jax.losses import (
    decomposition_loss,
    decomposition_loss_with_interaction,
    gram_intensity_loss,
    grey_level_lovasz_loss,
    lovasz_softmax_loss,
    max_intensity_loss,
)

gram_loss = jax.jit(gram_intensity_loss)
lovasz = jax.jit(lovasz_softmax_loss)
decomp_interaction = jax.jit(decomposition_loss_with_interaction)

A = np.array([1.0, 2.0, 3.0, 4.0], np.float32).reshape(1, 2, 2, 1)
ORTHOGONAL = np.array([1.0, -1.0, -1.0, 1.0], np.float32).reshape(1, 2, 2, 1)


def test_gram_intensity_loss_on_hand_computed_inputs():
    ones = np.ones((1, 3, 3, 1), np.float32)
    assert gram_loss(ones, 0.5 * ones) == pytest.approx(0.75)  # |mean x^2 - mean y^2|
    two_channels = np.concatenate([ones, 0.5 * ones], -1)  # Gram [[1, .5], [.5, .25]]
    assert gram_loss(two_channels, 0 * two_channels) == pytest.approx(1.25)  # Frobenius norm


def test_gram_intensity_loss_is_zero_with_finite_gradient_on_a_perfect_reconstruction():
    x = np.random.default_rng(0).random((2, 4, 4, 1)).astype(np.float32)
    assert gram_loss(x, x) == 0.0
    g = jax.jit(jax.grad(gram_intensity_loss, argnums=1))(x, x)
    assert bool(jnp.all(jnp.isfinite(g)))


def test_lovasz_softmax_on_hand_computed_input():
    # Two pixels, labels (0, 1), p(class 1) = (0.2, 0.7).
    # Class 0: errors sorted (0.3 bg, 0.2 fg), Jaccard gradient (1/2, 1/2) -> 0.25.
    # Class 1: errors sorted (0.3 fg, 0.2 bg), Jaccard gradient (1, 0) -> 0.3. Mean 0.275.
    probs = np.array([[[[0.8, 0.2], [0.3, 0.7]]]], np.float32)
    labels = np.array([[[0, 1]]], np.int32)
    assert lovasz(probs, labels) == pytest.approx(0.275, rel=1e-6)


def test_lovasz_softmax_is_zero_on_perfect_prediction():
    labels = np.random.default_rng(1).integers(0, 4, (2, 5, 5)).astype(np.int32)
    assert lovasz(np.eye(4, dtype=np.float32)[labels], labels) == 0.0


def test_lovasz_softmax_equals_one_minus_iou_on_hard_predictions():
    # The Lovasz extension agrees with the Jaccard loss at the vertices of the cube.
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, (2, 6, 6)).astype(np.int32)
    predicted = rng.integers(0, 4, (2, 6, 6))  # class 3 is predicted but absent from labels
    ious = [
        np.sum((predicted == c) & (labels == c)) / np.sum((predicted == c) | (labels == c)) for c in range(3)
    ]
    hard = np.eye(4, dtype=np.float32)[predicted]
    assert lovasz(hard, labels) == pytest.approx(1 - np.mean(ious), rel=1e-5)


def test_lovasz_softmax_gradient_is_finite_and_jitted():
    rng = np.random.default_rng(3)
    probs = jax.nn.softmax(rng.standard_normal((1, 4, 4, 3)).astype(np.float32))
    labels = rng.integers(0, 3, (1, 4, 4)).astype(np.int32)
    g = jax.jit(jax.grad(lovasz_softmax_loss))(probs, labels)
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.max(jnp.abs(g))) > 0


def test_decomposition_with_interaction_on_hand_computed_inputs():
    same, apart = np.stack([A, A]), np.stack([A, ORTHOGONAL])
    assert decomp_interaction(same, same, apart) == pytest.approx(1 / 2.01, rel=1e-6)
    assert decomp_interaction(same, same, same) == pytest.approx(2 / 2.01, rel=1e-6)
    assert decomp_interaction(np.stack([A, -A]), same, same) == pytest.approx(200, rel=1e-4)
    # Without interaction correlation it is eq. 26, the plain decomposition loss.
    low = np.random.default_rng(4).random((2, 1, 2, 2, 1)).astype(np.float32)
    assert decomp_interaction(low, same, apart) == pytest.approx(
        float(jax.jit(decomposition_loss)(low, same)), rel=1e-6
    )


def test_decomposition_with_interaction_gradients_are_finite_at_constant_maps():
    constant = np.full((2, 1, 3, 3, 2), 0.5, np.float32)
    grads = jax.jit(jax.grad(decomposition_loss_with_interaction, argnums=(0, 1, 2)))(
        constant, constant, constant
    )
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_grey_level_lovasz_on_hand_computed_input():
    # Source (0.2, 0.9): labels dark, bright. Reconstruction (0.3, 0.6) is P(bright).
    # Dark class: errors (0.3 fg, 0.4 bg) sorted (0.4 bg, 0.3 fg), Jaccard gradient (1/2, 1/2) -> 0.35.
    # Bright class: errors (0.3 bg, 0.4 fg) sorted (0.4 fg, 0.3 bg), gradient (1, 0) -> 0.4. Mean 0.375.
    source = np.array([0.2, 0.9], np.float32).reshape(1, 1, 2, 1)
    reconstruction = np.array([0.3, 0.6], np.float32).reshape(1, 1, 2, 1)
    grey_lovasz = jax.jit(grey_level_lovasz_loss)
    assert grey_lovasz(source, reconstruction) == pytest.approx(0.375, rel=1e-6)
    assert grey_lovasz(source, (source > 0.5).astype(np.float32)) == 0.0
    with pytest.raises(ValueError, match=r"\(B, H, W, 1\)"):
        grey_level_lovasz_loss(np.zeros((1, 2, 2, 2), np.float32), np.zeros((1, 2, 2, 2), np.float32))


def test_max_intensity_loss_is_the_l1_distance_to_the_brightest_source():
    sources = np.array([[0.1, 0.7], [0.5, 0.2]], np.float32).reshape(1, 1, 2, 2)  # max (0.7, 0.5)
    fused = np.array([0.4, 0.5], np.float32).reshape(1, 1, 2, 1)
    assert max_intensity_loss(fused, sources) == pytest.approx(0.15)  # (0.3 + 0) / 2
