"""Correlation coefficient and the CC decomposition loss (Fuse4Seg / CDDFuse L_decomp)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fuse4seg_jax.losses import correlation_coefficient, decomposition_loss, pairwise_correlations

cc = jax.jit(correlation_coefficient)
decomp = jax.jit(decomposition_loss)

A = np.array([1.0, 2.0, 3.0, 4.0], np.float32).reshape(1, 2, 2, 1)
ORTHOGONAL = np.array([1.0, -1.0, -1.0, 1.0], np.float32).reshape(1, 2, 2, 1)  # centred A . it = 0


def stack(*maps):
    return np.stack(maps)


def test_correlation_on_hand_computed_inputs():
    assert cc(A, 2 * A + 1) == pytest.approx(1.0, abs=1e-6)
    assert cc(A, -A) == pytest.approx(-1.0, abs=1e-6)
    assert cc(A, ORTHOGONAL) == pytest.approx(0.0, abs=1e-6)


def test_correlation_is_averaged_over_samples_and_channels():
    a = np.concatenate([A, A], axis=0)  # two samples
    b = np.concatenate([A, -A], axis=0)  # CC 1 and -1
    assert cc(a, b) == pytest.approx(0.0, abs=1e-6)
    a = np.concatenate([A, A, A], axis=-1)  # three channels: CC 1, 1, 0
    b = np.concatenate([A, A, ORTHOGONAL], axis=-1)
    assert cc(a, b) == pytest.approx(2 / 3, abs=1e-6)


def test_decomposition_loss_on_hand_computed_inputs():
    assert decomp(stack(A, A), stack(A, A)) == pytest.approx(1 / 2.01, rel=1e-6)
    assert decomp(stack(A, -A), stack(A, A)) == pytest.approx(1 / 0.01, rel=1e-4)  # upper bound
    assert decomp(stack(A, A), stack(A, ORTHOGONAL)) == pytest.approx(0.0, abs=1e-12)


def test_decomposition_loss_averages_over_modality_pairs():
    # N = 3: pairs (0, 1), (0, 2), (1, 2) have high-frequency CC 1, 0, 0 and low CC 1.
    pairs = jax.jit(pairwise_correlations)(stack(A, A, ORTHOGONAL))
    np.testing.assert_allclose(pairs, [1, 0, 0], atol=1e-6)
    loss = decomp(stack(A, A, A), stack(A, A, ORTHOGONAL))
    assert loss == pytest.approx((1 / 2.01) / 3, rel=1e-6)


def test_decomposition_loss_stays_within_its_bounds():
    rng = np.random.default_rng(0)
    draws = jax.jit(jax.vmap(decomposition_loss))
    low = rng.standard_normal((64, 2, 2, 4, 4, 1)).astype(np.float32)
    high = rng.standard_normal((64, 2, 2, 4, 4, 1)).astype(np.float32)
    # Mix in exactly (anti-)correlated pairs to reach the extremes.
    low[:16, 1] = -low[:16, 0]
    high[:16, 1] = 3 * high[:16, 0]
    losses = np.asarray(draws(low, high))
    assert np.all(losses >= 0) and np.all(losses <= 1 / 0.01 + 1e-3)
    assert losses.max() > 99  # the bound is attained


def test_gradients_are_finite_at_constant_feature_maps():
    rng = np.random.default_rng(1)
    varied = rng.random((2, 2, 4, 4, 3)).astype(np.float32)
    constant = np.full((2, 2, 4, 4, 3), 0.5, np.float32)
    half_constant = varied.copy()
    half_constant[0] = 0.5
    grad = jax.jit(jax.grad(decomposition_loss, argnums=(0, 1)))
    for low, high in [(constant, constant), (half_constant, half_constant), (varied, constant)]:
        for g in grad(low, high):
            assert bool(jnp.all(jnp.isfinite(g)))


def test_a_single_modality_is_refused():
    with pytest.raises(ValueError, match="N >= 2"):
        decomposition_loss(A[None], A[None])
