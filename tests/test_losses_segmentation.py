"""Weighted soft Dice + cross-entropy: the follower's loss (Fuse4Seg lower level)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fuse4seg_jax.losses import cross_entropy_loss, dice_ce_loss, soft_dice_loss

# Jitted once per module: eager JAX compiles every primitive separately, which is slower.
dice = jax.jit(soft_dice_loss)
ce = jax.jit(cross_entropy_loss)
dice_ce = jax.jit(dice_ce_loss)

# Two pixels, both predicted p = (0.25, 0.75); labels 0 and 1.
# Class 0: intersection 0.25, sum p 0.5, sum y 1 -> Dice 1/3. Class 1: 0.75, 1.5, 1 -> Dice 0.6.
LOGITS = np.array([[[[0.0, np.log(3.0)], [0.0, np.log(3.0)]]]], np.float32)
LABELS = np.array([[[0, 1]]], np.int32)


def one_hot_logits(labels, num_classes):
    return 1e3 * np.eye(num_classes, dtype=np.float32)[labels]


def test_dice_on_hand_computed_input():
    assert dice(LOGITS, LABELS, eps=0.0) == pytest.approx(1 - (1 / 3 + 0.6) / 2, abs=1e-6)


def test_dice_class_weights_act_as_a_weighted_mean_whatever_their_scale():
    expected = 1 - (1 / 3 + 3 * 0.6) / 4
    for weights in ([1.0, 3.0], [0.5, 1.5], [10.0, 30.0]):
        loss = dice(LOGITS, LABELS, np.array(weights, np.float32), eps=0.0)
        assert loss == pytest.approx(expected, abs=1e-6)


def test_dice_is_zero_on_perfect_prediction_even_with_an_absent_class():
    labels = np.random.default_rng(0).integers(0, 3, (2, 5, 6)).astype(np.int32)  # no class 3
    logits = one_hot_logits(labels, 4)
    weights = np.array([0.1, 1.0, 2.0, 3.0], np.float32)
    assert dice(logits, labels) == pytest.approx(0.0, abs=1e-6)
    assert dice(logits, labels, weights) == pytest.approx(0.0, abs=1e-6)
    assert dice_ce(logits, labels, weights) == pytest.approx(0.0, abs=1e-6)


def test_dice_includes_background():
    # Perfect on tumour classes, every background pixel predicted as class 1.
    labels = np.array([[[0, 0, 1, 2]]], np.int32)
    logits = one_hot_logits(np.array([[[1, 1, 1, 2]]]), 3)
    # Dice: background 0, class 1: 2 * 1 / (3 + 1) = 0.5, class 2: 1.
    assert dice(logits, labels, eps=0.0) == pytest.approx(1 - 1.5 / 3, abs=1e-6)
    no_background = np.array([0.0, 1.0, 1.0], np.float32)
    assert dice(logits, labels, no_background, eps=0.0) == pytest.approx(0.25, abs=1e-6)


def test_cross_entropy_matches_optax():
    rng = np.random.default_rng(1)
    logits = (3.0 * rng.standard_normal((2, 4, 5, 4))).astype(np.float32)
    labels = rng.integers(0, 4, (2, 4, 5)).astype(np.int32)
    per_pixel = optax.softmax_cross_entropy_with_integer_labels
    reference = jax.jit(lambda x, y: jnp.mean(per_pixel(x, y)))
    np.testing.assert_allclose(ce(logits, labels), reference(logits, labels), rtol=1e-6)


def test_cross_entropy_of_uniform_prediction_is_log_num_classes():
    logits = np.zeros((1, 2, 3, 4), np.float32)
    labels = np.zeros((1, 2, 3), np.int32)
    assert ce(logits, labels) == pytest.approx(np.log(4.0), rel=1e-6)


def test_dice_ce_is_the_sum_of_its_parts_with_finite_gradients():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((2, 4, 4, 4)).astype(np.float32)
    labels = rng.integers(0, 4, (2, 4, 4)).astype(np.int32)
    weights = np.array([0.2, 1.0, 1.0, 1.5], np.float32)
    parts = dice(logits, labels, weights) + ce(logits, labels)
    np.testing.assert_allclose(dice_ce(logits, labels, weights), parts, rtol=1e-6)
    grads = jax.jit(jax.grad(dice_ce_loss))(logits, labels, weights)
    assert bool(jnp.all(jnp.isfinite(grads))) and float(jnp.max(jnp.abs(grads))) > 0


def test_wrong_number_of_class_weights_is_refused():
    with pytest.raises(ValueError, match=r"expected \(2,\)"):
        soft_dice_loss(LOGITS, LABELS, np.ones((3,), np.float32))
