"""Reconstruction anchor of the Fuse4Seg upper level: stay close to the average of the sources."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fuse4seg_jax.losses._checks import check_fused_and_sources


def reconstruction_loss(fused: jax.Array, sources: jax.Array) -> jax.Array:
    """Mean squared error between the fused image and the pixel-wise mean of the N sources.

    ``mean (fused - (1/N) sum_n source_n)^2`` over all pixels of the batch (``L_recon``, the
    "physical anchor"; the average is also the follower's warm-up input).

    Arguments:
        fused: ``(B, H, W, 1)`` fused image.
        sources: ``(B, H, W, N)`` the N source images as channels.

    Returns:
        scalar loss.
    """
    check_fused_and_sources("reconstruction_loss", fused, sources)
    return jnp.mean((fused - jnp.mean(sources, axis=-1, keepdims=True)) ** 2)
