"""Pixel-intensity losses of a fused image against its sources.

The Fuse4Seg upper level's reconstruction anchor (stay close to the average of the sources) and
the max-intensity term of SMFNet's stage II (eq. 29), which is also CAF's ``l1_max``.
"""

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


def max_intensity_loss(fused: jax.Array, sources: jax.Array) -> jax.Array:
    """Mean absolute difference between the fused image and the pixel-wise maximum of the sources.

    ``mean |fused - max_n source_n|`` over all pixels of the batch: SMFNet's stage-II intensity
    loss ``|| I_f - max(|I_ir|, |I_vi|) ||_1`` (eq. 29, the absolute values are no-ops on images
    in [0, 1]; the ``1 / HW`` normalised L1) and CAF's ``l1_max`` term.

    Arguments:
        fused: ``(B, H, W, 1)`` fused image.
        sources: ``(B, H, W, N)`` the N source images as channels.

    Returns:
        scalar loss, 0 exactly when the fused image is the brightest source at every pixel.
    """
    check_fused_and_sources("max_intensity_loss", fused, sources)
    return jnp.mean(jnp.abs(fused - jnp.max(sources, axis=-1, keepdims=True)))
