"""Correlation-driven decomposition loss (CDDFuse / Fuse4Seg L_decomp) for N modalities.

Feature stacks are ``(N, B, H, W, C)``: N modalities' low- (base) or high-frequency (detail)
feature maps from the shared encoder.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

from fuse4seg_jax.losses._safe import safe_sqrt

# Shifts the denominator away from zero when the low-frequency features are anti-correlated
# (CC = -1): the loss then stays below 1 / 0.01 = 100.
DECOMPOSITION_OFFSET = 1.01


def correlation_coefficient(a: jax.Array, b: jax.Array) -> jax.Array:
    """Pearson correlation per (sample, channel) over the spatial axes, averaged.

    For each sample and channel, with ``a`` and ``b`` centred on their spatial mean:
    ``sum(a b) / (eps + sqrt(sum a^2) sqrt(sum b^2))``, clipped to ``[-1, 1]``, where ``eps`` is
    float32 machine epsilon (as in the CDDFuse reference code); then the mean over samples and
    channels. A constant map has CC 0 with anything, and finite gradients.

    Arguments:
        a: ``(B, H, W, C)`` feature maps.
        b: ``(B, H, W, C)`` feature maps.

    Returns:
        scalar in ``[-1, 1]``.
    """
    if a.shape != b.shape:
        raise ValueError(f"correlation_coefficient: shapes differ, {a.shape} vs {b.shape}")
    spatial = (1, 2)
    a = a - jnp.mean(a, axis=spatial, keepdims=True)
    b = b - jnp.mean(b, axis=spatial, keepdims=True)
    eps = float(jnp.finfo(jnp.float32).eps)
    norm = safe_sqrt(jnp.sum(a * a, axis=spatial) * jnp.sum(b * b, axis=spatial))
    cc = jnp.sum(a * b, axis=spatial) / (eps + norm)
    return jnp.mean(jnp.clip(cc, -1.0, 1.0))


def pairwise_correlations(features: jax.Array) -> jax.Array:
    """:func:`correlation_coefficient` for every pair ``i < j`` of an ``(N, B, H, W, C)`` stack.

    Arguments:
        features: ``(N, B, H, W, C)`` with ``N >= 2``.

    Returns:
        ``(N (N - 1) / 2,)`` correlations, pairs in lexicographic order ``(0, 1), (0, 2), ...``.
    """
    if features.ndim != 5 or features.shape[0] < 2:
        raise ValueError(
            f"expected a (N, B, H, W, C) stack with N >= 2 modalities, got shape {features.shape}"
        )
    pairs = itertools.combinations(range(features.shape[0]), 2)
    return jnp.stack([correlation_coefficient(features[i], features[j]) for i, j in pairs])


def decomposition_loss(low: jax.Array, high: jax.Array) -> jax.Array:
    """``CC(high_i, high_j)^2 / (1.01 + CC(low_i, low_j))`` averaged over modality pairs ``i < j``.

    For N = 2 this is the Fuse4Seg / CDDFuse formula; minimising it decorrelates the
    modality-specific (high-frequency) features and correlates the shared (low-frequency) ones.
    Each pair's value lies in ``[0, 1 / 0.01]``, and so does the mean.

    Arguments:
        low: ``(N, B, H, W, C)`` low-frequency features of the N modalities.
        high: ``(N, B, H, W, C)`` high-frequency features of the N modalities.

    Returns:
        scalar loss.
    """
    cc_low = pairwise_correlations(low)
    cc_high = pairwise_correlations(high)
    return jnp.mean(cc_high**2 / (DECOMPOSITION_OFFSET + cc_low))
