"""Fuse4Seg v1's pre-training loss of the decomposition encoder (eq. 9, 11 and 12), N modalities.

Stacks are modality-major, as a leader's ``autoencode`` pass returns them: reconstructions and
sources ``(N, B, H, W, 1)`` in [0, 1], features ``(N, B, H, W, C)``. The adversarial part of
eq. 9 (``lambda L_adv``, eq. 10) needs the discriminators and lives with them in
``fuse4seg_jax.train.objectives``; ``docs/conventions.md#fuse4seg-v1`` lists the choices made
where the paper is silent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fuse4seg_jax.losses.decomposition import decomposition_loss
from fuse4seg_jax.losses.ssim import ssim


def content_loss(reconstructions: jax.Array, sources: jax.Array) -> jax.Array:
    """Eq. 12 summed over the modalities: ``sum_n ||M_n - D(M_n)||^2 + (1 - SSIM(M_n, D(M_n)))``.

    The squared norm is the mean over pixels (the MSE), so the two parts stay on one scale
    whatever the image size; the SSIM is the 11 x 11 Gaussian one of ``fuse4seg_jax.losses.ssim``
    (``1 - SSIM``, not the halved ``ssim_loss``, as eq. 12 writes it).

    Arguments:
        reconstructions: ``(N, B, H, W, 1)``, the decoder's outputs ``D(M_n)``.
        sources: ``(N, B, H, W, 1)``, the images ``M_n``; ``H, W >= 11``.

    Returns:
        scalar; 0 for perfect reconstructions.
    """
    if reconstructions.shape != sources.shape or reconstructions.ndim != 5:
        raise ValueError(
            f"content_loss: expected two (N, B, H, W, 1) stacks of one shape, got "
            f"{reconstructions.shape} and {sources.shape}"
        )
    return sum(
        jnp.mean((r - s) ** 2) + (1.0 - ssim(r, s)) for r, s in zip(reconstructions, sources, strict=True)
    )


def encoder_loss(
    reconstructions: jax.Array, sources: jax.Array, low: jax.Array, high: jax.Array, sigma: float
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Eq. 9 without its adversarial term: ``sigma L_correlation + (1 - sigma) L_content``.

    Arguments:
        reconstructions: ``(N, B, H, W, 1)`` decoder outputs.
        sources: ``(N, B, H, W, 1)`` source images.
        low: ``(N, B, H, W, C)`` low-frequency (``phi_DL``) features of the N modalities.
        high: ``(N, B, H, W, C)`` high-frequency (``phi_DH``) features.
        sigma: eq. 9's trade-off, in [0, 1].

    Returns:
        ``(loss, {"decomp": L_correlation, "content": L_content})``; ``L_correlation`` is eq. 11,
        the decomposition loss with offset 1.01 (averaged over modality pairs for N > 2).
    """
    terms = {"decomp": decomposition_loss(low, high), "content": content_loss(reconstructions, sources)}
    return sigma * terms["decomp"] + (1.0 - sigma) * terms["content"], terms
