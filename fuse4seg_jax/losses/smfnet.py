"""SMFNet's losses (SMFNet, sec. 2.3, eq. 20-27; ``docs/conventions.md#losses``).

Gram-matrix intensity, Lovasz-softmax, and the decomposition loss with an interaction term.
No training stage or command uses them yet: a later issue wires them into SMFNet training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fuse4seg_jax.losses._safe import safe_sqrt
from fuse4seg_jax.losses.decomposition import DECOMPOSITION_OFFSET, pairwise_correlations


def gram_matrix(x: jax.Array) -> jax.Array:
    """Channel Gram matrix per sample, normalised by the number of pixels.

    Arguments:
        x: ``(B, H, W, C)`` images or feature maps.

    Returns:
        ``(B, C, C)`` with entries ``(1 / HW) sum_p x_pc x_pd``. For a single-channel image this is
        the mean squared intensity, a ``(B, 1, 1)`` array.
    """
    height, width = x.shape[1:3]
    return jnp.einsum("bhwc,bhwd->bcd", x, x) / (height * width)


def gram_intensity_loss(target: jax.Array, reconstruction: jax.Array) -> jax.Array:
    """SMFNet eq. 20: ``|| Gram(target) - Gram(reconstruction) ||_2``, averaged over the batch.

    The norm is the Frobenius norm of the ``(C, C)`` difference (not squared, as the paper writes
    it), with a zero (sub)gradient where the two Gram matrices are equal. SMFNet applies it to
    the infrared image and its reconstruction, where (one channel) it compares mean energies.

    Arguments:
        target: ``(B, H, W, C)`` source images or features.
        reconstruction: ``(B, H, W, C)`` reconstructions of them.

    Returns:
        scalar loss.
    """
    if target.shape != reconstruction.shape or target.ndim != 4:
        raise ValueError(
            f"gram_intensity_loss: expected two (B, H, W, C) arrays of one shape, got "
            f"{target.shape} and {reconstruction.shape}"
        )
    difference = gram_matrix(target) - gram_matrix(reconstruction)
    return jnp.mean(safe_sqrt(jnp.sum(difference**2, axis=(1, 2))))


def _lovasz_jaccard_gradient(sorted_foreground: jax.Array) -> jax.Array:
    """Gradient of the Lovasz extension of the Jaccard loss at errors sorted in decreasing order."""
    total = jnp.sum(sorted_foreground)
    intersection = total - jnp.cumsum(sorted_foreground)
    # At least 1 from the first position on: either a foreground pixel exists (total >= 1) or the
    # first sorted pixel is background and counts in the union.
    union = total + jnp.cumsum(1.0 - sorted_foreground)
    jaccard = 1.0 - intersection / union
    return jnp.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def _lovasz_class_loss(class_probs: jax.Array, foreground: jax.Array) -> jax.Array:
    errors = jnp.abs(foreground - class_probs)
    order = jnp.argsort(-errors)
    return jnp.dot(errors[order], _lovasz_jaccard_gradient(foreground[order]))


def lovasz_softmax_loss(probs: jax.Array, labels: jax.Array) -> jax.Array:
    """Lovasz-softmax loss (Berman et al. 2018), the convex surrogate of 1 - IoU used by SMFNet.

    For each class c, pixel errors ``e_i = |[y_i = c] - p_ic|`` are sorted in decreasing order
    and dotted with the gradient of the Lovasz extension of the Jaccard loss of class c (paper
    004 eq. 21-25). The loss is the mean over the classes present in ``labels`` (Berman's
    ``classes='present'``), computed over all pixels of the batch at once (``per_image=False``).
    Gradients flow through the errors; the sort order is piecewise constant.

    SMFNet applies it between the visible image and its reconstruction without saying how classes
    are formed from grey values; this function takes explicit class probabilities and labels.

    Arguments:
        probs: ``(B, H, W, C)`` class probabilities (e.g. a softmax), summing to 1 over C.
        labels: ``(B, H, W)`` int32 class indices in ``[0, C)``.

    Returns:
        scalar loss in ``[0, 1]``; 0 for a one-hot prediction equal to the labels.
    """
    num_classes = probs.shape[-1]
    if probs.shape[:-1] != labels.shape:
        raise ValueError(
            f"lovasz_softmax_loss: probs (B, H, W, C) and labels (B, H, W) disagree: "
            f"{probs.shape} vs {labels.shape}"
        )
    flat_probs = probs.reshape(-1, num_classes)
    foreground = jax.nn.one_hot(labels.reshape(-1), num_classes, dtype=probs.dtype)
    per_class = jax.vmap(_lovasz_class_loss, in_axes=(1, 1))(flat_probs, foreground)
    present = (jnp.sum(foreground, axis=0) > 0).astype(probs.dtype)
    return jnp.sum(present * per_class) / jnp.maximum(jnp.sum(present), 1.0)


def decomposition_loss_with_interaction(low: jax.Array, high: jax.Array, interaction: jax.Array) -> jax.Array:
    """SMFNet eq. 27: ``(CC(high)^2 + CC(interaction)^2) / (1.01 + CC(low))`` over modality pairs.

    CC is :func:`fuse4seg_jax.losses.correlation_coefficient` between two modalities' features;
    for N modalities the value is averaged over pairs ``i < j``, like
    :func:`fuse4seg_jax.losses.decomposition_loss` (eq. 26, which this extends with the graph
    interaction branch). Bounded by ``[0, 2 / 0.01]``.

    Arguments:
        low: ``(N, B, H, W, C)`` base (low-frequency) features of the N modalities.
        high: ``(N, B, H, W, C)`` detail (high-frequency) features.
        interaction: ``(N, B, H, W, C')`` graph-interaction features.

    Returns:
        scalar loss.
    """
    numerator = pairwise_correlations(high) ** 2 + pairwise_correlations(interaction) ** 2
    return jnp.mean(numerator / (DECOMPOSITION_OFFSET + pairwise_correlations(low)))
