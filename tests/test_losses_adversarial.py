"""GAN losses on logits: exact values, stability when saturated, and the two generator forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fuse4seg_jax.losses import (
    GENERATOR_LOSSES,
    discriminator_loss,
    generator_loss_minimax,
    generator_loss_non_saturating,
)

LOG2 = float(np.log(2.0))


def test_values_at_zero_logits():
    zeros = np.zeros((2, 3), np.float32)
    assert jax.jit(discriminator_loss)(zeros, zeros) == pytest.approx(2 * LOG2, rel=1e-6)
    assert jax.jit(GENERATOR_LOSSES["non_saturating"])(zeros) == pytest.approx(LOG2, rel=1e-6)
    assert jax.jit(GENERATOR_LOSSES["minimax"])(zeros) == pytest.approx(-LOG2)


def test_values_on_hand_computed_logits():
    # D(fake) = sigmoid(log 3) = 3/4; D(real) = sigmoid(-log 3) = 1/4.
    fake = np.full((4,), np.log(3.0), np.float32)
    real = -fake
    assert generator_loss_non_saturating(fake) == pytest.approx(-np.log(0.75), rel=1e-6)
    assert generator_loss_minimax(fake) == pytest.approx(np.log(0.25), rel=1e-6)
    assert discriminator_loss(real, fake) == pytest.approx(-2 * np.log(0.25), rel=1e-6)


def test_saturated_logits_give_exact_finite_values_and_gradients():
    big = np.array([1000.0, -1000.0], np.float32)
    assert generator_loss_non_saturating(big) == pytest.approx(500.0)
    assert generator_loss_minimax(big) == pytest.approx(-500.0)
    assert discriminator_loss(big, big) == pytest.approx(1000.0)
    for fn in (generator_loss_non_saturating, generator_loss_minimax):
        assert bool(jnp.all(jnp.isfinite(jax.grad(fn)(big))))


def test_non_saturating_form_keeps_a_gradient_when_fakes_are_rejected():
    rejected = np.array([-10.0], np.float32)  # D(fake) ~ 4.5e-5
    ns = float(jax.grad(generator_loss_non_saturating)(rejected)[0])
    mm = float(jax.grad(generator_loss_minimax)(rejected)[0])
    assert ns < 0 and mm < 0  # both push the logit up
    assert abs(ns) > 1e4 * abs(mm)
