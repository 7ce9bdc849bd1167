"""Segmentation losses of the follower (Fuse4Seg lower level): weighted soft Dice + cross-entropy.

Conventions: ``logits`` are unnormalised class scores ``(B, H, W, C)``; ``labels`` are int32 class
maps ``(B, H, W)`` with values in ``[0, C)`` (0 background, 1 NCR, 2 ED, 3 ET for BraTS).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _normalised_class_weights(
    class_weights: jax.Array | None, num_classes: int, dtype: jnp.dtype
) -> jax.Array:
    if class_weights is None:
        return jnp.ones((num_classes,), dtype)
    class_weights = jnp.asarray(class_weights, dtype)
    if class_weights.shape != (num_classes,):
        raise ValueError(f"class_weights has shape {class_weights.shape}, expected ({num_classes},)")
    # Weights are rescaled to mean 1 so that a perfect prediction scores exactly 0 whatever
    # their scale; with mean-1 weights this is the paper's 1 - (1/C) sum_c w_c Dice_c.
    return class_weights * (num_classes / jnp.sum(class_weights))


def soft_dice_loss(
    logits: jax.Array,
    labels: jax.Array,
    class_weights: jax.Array | None = None,
    eps: float = 1e-5,
) -> jax.Array:
    """Weighted multi-class soft Dice loss (Fuse4Seg sec. 3.5.1's L_Dice), background included.

    ``1 - sum_c w_c D_c / sum_c w_c`` with ``D_c = (2 sum_i p_ci y_ci + eps) /
    (sum_i p_ci + sum_i y_ci + eps)``, ``p = softmax(logits)`` and ``y`` the one-hot labels. Sums
    run over the whole batch and all pixels (a "batch Dice"), so a class absent from one slice
    does not make that slice's Dice undefined. A class absent from the whole batch scores
    ``eps / (sum_i p_ci + eps)``: 1 if it is predicted nowhere, otherwise near 0, which pushes its
    probabilities down.

    The background class is included, as in the paper's sum over all C classes (background, NCR,
    ED, ET); pass ``class_weights`` with a small or zero background weight to focus on tumour
    classes. Weights are rescaled to mean 1 (see the code), which equals the paper's
    ``1 - (1/C) sum_c w_c D_c`` whenever the given weights already have mean 1.

    Arguments:
        logits: ``(B, H, W, C)`` float32 class scores.
        labels: ``(B, H, W)`` int32 class indices in ``[0, C)``.
        class_weights: ``(C,)`` non-negative weights with a positive sum, or ``None`` for equal.
        eps: smoothing added to numerator and denominator.

    Returns:
        scalar loss in ``[0, 1]``.
    """
    num_classes = logits.shape[-1]
    weights = _normalised_class_weights(class_weights, num_classes, logits.dtype)
    probs = jax.nn.softmax(logits, axis=-1)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=probs.dtype)
    axes = tuple(range(probs.ndim - 1))
    intersection = jnp.sum(probs * onehot, axis=axes)
    total = jnp.sum(probs, axis=axes) + jnp.sum(onehot, axis=axes)
    dice = (2.0 * intersection + eps) / (total + eps)
    return 1.0 - jnp.sum(weights * dice) / num_classes


def cross_entropy_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy over all pixels of the batch.

    Arguments:
        logits: ``(B, H, W, C)`` float32 class scores.
        labels: ``(B, H, W)`` int32 class indices in ``[0, C)``.

    Returns:
        scalar ``mean_i -log softmax(logits_i)[labels_i]`` (natural log).
    """
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)
    return -jnp.mean(picked)


def dice_ce_loss(
    logits: jax.Array,
    labels: jax.Array,
    class_weights: jax.Array | None = None,
    eps: float = 1e-5,
) -> jax.Array:
    """Fuse4Seg's lower-level objective ``L_Dice + L_CE`` (equal weights, as in the paper).

    Arguments:
        logits: ``(B, H, W, C)`` float32 class scores.
        labels: ``(B, H, W)`` int32 class indices in ``[0, C)``.
        class_weights: ``(C,)`` Dice class weights (see :func:`soft_dice_loss`); CE is unweighted.
        eps: Dice smoothing.

    Returns:
        scalar :func:`soft_dice_loss` + :func:`cross_entropy_loss`.
    """
    return soft_dice_loss(logits, labels, class_weights, eps) + cross_entropy_loss(logits, labels)
