"""CAF's search space of fusion losses (CAF, Fig. 1 and eq. 2): 15 terms weighted by softmax(beta).

For two sources (the paper's infrared and visible; here any two modalities, in channel order)
the searched terms are, in this order (the paper's lambda_a ... lambda_o):

====  ==================  ==================================================================
 #    name                term (means over all pixels of the batch)
====  ==================  ==================================================================
 0-1  ``l1_<n>``          ``mean |F - I_n|``
 2    ``l1_max``          ``mean |F - max_n I_n|``
 3-4  ``saliency_l1_<n>`` ``mean |M_n F - M_n I_n|``, ``M_n`` = :func:`saliency_masks`
 5-6  ``mse_<n>``         ``mean (F - I_n)^2``
 7    ``mse_max``         ``mean (F - max_n I_n)^2``
 8-9  ``ssim_<n>``        :func:`fuse4seg_jax.losses.ssim_loss` ``(F, I_n)`` = ``(1 - SSIM) / 2``
10-11 ``gradient_<n>``    ``mean | |grad F| - |grad I_n| |`` (Sobel, zero padding)
12    ``gradient_max``    ``mean | |grad F| - max_n |grad I_n| |``
13-14 ``perceptual_<n>``  ``0.1 * sum_l mean |phi_l(F) - phi_l(I_n)|``
====  ==================  ==================================================================

plus the unsearched term ``saliency_mse = (1/N) sum_n mean (M_n F - M_n I_n)^2`` (weights 0.5 /
0.5 for two sources, as in the CAF code). The loss is
``saliency_mse + sum_k softmax(beta)_k term_k``.

Search spaces for N sources follow the same pattern (``6 N + 3`` terms); the paper's is N = 2.

The perceptual term's features ``phi`` come from a caller-given ``feature_fn`` (CAF uses VGG-16
layers, which cannot be downloaded here; pass, e.g., this project's pre-trained fusion encoder).
Unlike the CAF reference code, which detaches both feature sets so that the term sends no
gradient at all, the fused image's features keep their gradient; only the sources' features,
which are data, are constants.

``fuse4seg search`` (``fuse4seg_jax.search``) searches beta; ``fuse4seg train`` with
``loss.caf_weights`` trains a fusion network on a fixed point of the space. See
``docs/conventions.md#losses`` and ``docs/caf_search.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fuse4seg_jax.losses._checks import check_fused_and_sources
from fuse4seg_jax.losses.gradient import gradient_loss, sobel_magnitude
from fuse4seg_jax.losses.reconstruction import max_intensity_loss
from fuse4seg_jax.losses.saliency import saliency_masks
from fuse4seg_jax.losses.ssim import ssim_loss

PERCEPTUAL_SCALE = 0.1
FIXED_TERM_NAME = "saliency_mse"

FeatureFn = Callable[[jax.Array], Any]


def caf_term_names(num_sources: int = 2) -> tuple[str, ...]:
    """Names of the searched terms for ``num_sources`` sources, in the order of beta.

    Arguments:
        num_sources: N >= 2.

    Returns:
        ``6 N + 3`` names; for N = 2 the 15 names of the module docstring's table.
    """
    if num_sources < 2:
        raise ValueError(f"the CAF search space needs at least 2 sources, got {num_sources}")
    sources = range(num_sources)
    return (
        *(f"l1_{n}" for n in sources),
        "l1_max",
        *(f"saliency_l1_{n}" for n in sources),
        *(f"mse_{n}" for n in sources),
        "mse_max",
        *(f"ssim_{n}" for n in sources),
        *(f"gradient_{n}" for n in sources),
        "gradient_max",
        *(f"perceptual_{n}" for n in sources),
    )


CAF_TERM_NAMES = caf_term_names(2)


def init_caf_logits(num_sources: int = 2) -> jax.Array:
    """Raw search variables beta, all equal (zeros), so every term starts with weight 1/K.

    Arguments:
        num_sources: N >= 2.

    Returns:
        ``(6 N + 3,)`` float32 zeros; ``(15,)`` for two sources.
    """
    return jnp.zeros((len(caf_term_names(num_sources)),), jnp.float32)


def caf_weights(beta_logits: jax.Array) -> jax.Array:
    """Term weights ``softmax(beta)``: positive, summing to 1.

    Arguments:
        beta_logits: ``(K,)`` raw search variables.

    Returns:
        ``(K,)`` weights.
    """
    return jax.nn.softmax(beta_logits)


def _perceptual_l1(feature_fn: FeatureFn, fused: jax.Array, source: jax.Array) -> jax.Array:
    fused_features = jax.tree.leaves(feature_fn(fused))
    source_features = jax.tree.leaves(jax.lax.stop_gradient(feature_fn(source)))
    return sum(jnp.mean(jnp.abs(f - s)) for f, s in zip(fused_features, source_features, strict=True))


def caf_terms(fused: jax.Array, sources: jax.Array, feature_fn: FeatureFn) -> dict[str, jax.Array]:
    """Every term of the search space, plus the fixed saliency-masked MSE (module docstring).

    Arguments:
        fused: ``(B, H, W, 1)`` fused image in ``[0, 1]``, ``H, W >= 11`` (SSIM window).
        sources: ``(B, H, W, N)`` source images in ``[0, 1]``, N >= 2.
        feature_fn: maps ``(B, H, W, 1)`` images to a pytree of feature arrays (one leaf per
            layer ``l``); must be differentiable in its input.

    Returns:
        dict of scalars: the ``6 N + 3`` keys of :func:`caf_term_names` and ``"saliency_mse"``.
    """
    check_fused_and_sources("caf_terms", fused, sources)
    num_sources = sources.shape[-1]
    if num_sources < 2:
        raise ValueError(f"the CAF search space needs at least 2 sources, got {num_sources}")
    singles = [sources[..., n : n + 1] for n in range(num_sources)]
    brightest = jnp.max(sources, axis=-1, keepdims=True)
    masks = saliency_masks(sources)
    masked_errors = masks * (fused - sources)
    fused_gradient = sobel_magnitude(fused)
    source_gradients = sobel_magnitude(sources)

    terms: dict[str, jax.Array] = {}
    for n, single in enumerate(singles):
        terms[f"l1_{n}"] = jnp.mean(jnp.abs(fused - single))
    terms["l1_max"] = max_intensity_loss(fused, sources)
    for n in range(num_sources):
        terms[f"saliency_l1_{n}"] = jnp.mean(jnp.abs(masked_errors[..., n]))
    for n, single in enumerate(singles):
        terms[f"mse_{n}"] = jnp.mean((fused - single) ** 2)
    terms["mse_max"] = jnp.mean((fused - brightest) ** 2)
    for n, single in enumerate(singles):
        terms[f"ssim_{n}"] = ssim_loss(fused, single)
    gradient_errors = jnp.abs(fused_gradient - source_gradients)
    for n in range(num_sources):
        terms[f"gradient_{n}"] = jnp.mean(gradient_errors[..., n])
    terms["gradient_max"] = gradient_loss(fused, sources)
    for n, single in enumerate(singles):
        terms[f"perceptual_{n}"] = PERCEPTUAL_SCALE * _perceptual_l1(feature_fn, fused, single)
    terms[FIXED_TERM_NAME] = jnp.mean(masked_errors**2)
    return terms


def caf_weighted_loss(
    weights: jax.Array, fused: jax.Array, sources: jax.Array, feature_fn: FeatureFn
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``saliency_mse + sum_k weights_k term_k`` for given (not necessarily softmax) weights.

    What a fixed loss of the search space is (searched, uniform, hand-made or random weights);
    :func:`caf_loss` is this with ``weights = softmax(beta)``.

    Arguments:
        weights: ``(6 N + 3,)`` term weights in the order of :func:`caf_term_names`.
        fused: ``(B, H, W, 1)`` fused image in ``[0, 1]``, ``H, W >= 11``.
        sources: ``(B, H, W, N)`` source images in ``[0, 1]``.
        feature_fn: feature network for the perceptual terms (see :func:`caf_terms`).

    Returns:
        ``(loss, terms)`` with :func:`caf_terms`'s dict of unweighted terms.

    Raises:
        ValueError: ``weights`` does not have one entry per term of the N-source space.
    """
    names = caf_term_names(sources.shape[-1])
    if weights.shape != (len(names),):
        raise ValueError(
            f"CAF loss: {weights.shape} weights, expected ({len(names)},) for {sources.shape[-1]} sources"
        )
    terms = caf_terms(fused, sources, feature_fn)
    searched = jnp.stack([terms[name] for name in names])
    return terms[FIXED_TERM_NAME] + jnp.dot(weights, searched), terms


def caf_loss(
    beta_logits: jax.Array, fused: jax.Array, sources: jax.Array, feature_fn: FeatureFn
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """CAF's searched fusion loss ``saliency_mse + sum_k softmax(beta)_k term_k``.

    Differentiable in ``beta_logits`` (the outer, searched variable) and in ``fused`` (hence in
    the fusion network's parameters, the inner variable).

    Arguments:
        beta_logits: ``(6 N + 3,)`` raw weights, ``(15,)`` for two sources (see
            :func:`init_caf_logits`).
        fused: ``(B, H, W, 1)`` fused image in ``[0, 1]``, ``H, W >= 11``.
        sources: ``(B, H, W, N)`` source images in ``[0, 1]``.
        feature_fn: feature network for the perceptual terms (see :func:`caf_terms`).

    Returns:
        ``(loss, terms)``: the scalar loss and :func:`caf_terms`'s dict (unweighted terms,
        perceptual ones including their 0.1 factor), so that
        ``loss == terms["saliency_mse"] + sum_k caf_weights(beta)[k] * terms[names[k]]``.

    Raises:
        ValueError: ``beta_logits`` does not have one entry per term.
    """
    return caf_weighted_loss(caf_weights(beta_logits), fused, sources, feature_fn)
