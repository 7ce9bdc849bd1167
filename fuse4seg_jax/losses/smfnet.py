"""SMFNet's losses (SMFNet, sec. 2.3, eq. 20-27; ``docs/conventions.md#losses``).

Gram-matrix intensity, Lovasz-softmax (and its grey-level form for reconstructions), and the
decomposition loss with an interaction term. SMFNet's stage I (``loss.pretrain_objective =
"smfnet"``, ``fuse4seg_jax.train.smfnet_objectives``) uses the first two; eq. 27 is the ``decomp``
fusion term of every leader with an interaction branch (``fuse4seg_jax.losses.fusion_terms``).
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
    and dotted with the gradient of the Lovasz extension of the Jaccard loss of class c (SMFNet
    eq. 21-25). The loss is the mean over the classes present in ``labels`` (Berman's
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


# Grey levels above mid-grey are the "bright" class of the grey-level Lovasz loss. Sources are
# normalised to [0, 1] per volume (percentile clip, min-max), so mid-grey is one fixed level
# across cases.
BRIGHT_THRESHOLD = 0.5


def grey_level_lovasz_loss(source: jax.Array, reconstruction: jax.Array) -> jax.Array:
    """SMFNet's semantic loss (eq. 21-25) between an image and its reconstruction: our reading.

    SMFNet applies the Lovasz-softmax loss to the visible image and its reconstruction without
    saying how grey values become classes. Here there are two classes, dark and bright: the
    source's labels are ``source > BRIGHT_THRESHOLD`` (0.5), and the reconstruction's grey value is
    its probability of "bright", ``probs = (1 - r, r)``. The loss is then
    :func:`lovasz_softmax_loss` of those, the Lovasz surrogate of ``1 - IoU`` of the bright and dark
    regions (``docs/conventions.md#smfnet``): 0 when the reconstruction is exactly the binary
    image of the source's bright region, and it pushes bright pixels up and dark ones down, which
    sharpens the contours that SMFNet wants this term to keep.

    Arguments:
        source: ``(B, H, W, 1)`` image in [0, 1].
        reconstruction: ``(B, H, W, 1)`` its reconstruction in [0, 1].

    Returns:
        scalar loss in [0, 1].
    """
    if source.shape != reconstruction.shape or source.ndim != 4 or source.shape[-1] != 1:
        raise ValueError(
            f"grey_level_lovasz_loss: expected two (B, H, W, 1) images of one shape, got "
            f"{source.shape} and {reconstruction.shape}"
        )
    labels = (source[..., 0] > BRIGHT_THRESHOLD).astype(jnp.int32)
    return lovasz_softmax_loss(jnp.concatenate([1.0 - reconstruction, reconstruction], axis=-1), labels)


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
