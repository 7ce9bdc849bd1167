"""Structural similarity (SSIM) with an 11x11 Gaussian window, and the SSIM loss.

Conventions (Wang et al. 2004 as implemented by pytorch-msssim and CDDFuse's training code):
images in ``[0, 1]`` (data range 1), Gaussian window 11x11 with sigma 1.5, ``C1 = (0.01)^2 = 1e-4``,
``C2 = (0.03)^2 = 9e-4``, population (biased) local variances, and 'valid' filtering: SSIM is
computed only where the whole window fits inside the image, so H and W must be at least 11.
This equals scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)``, which also discards the 5-pixel border.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

WINDOW_SIZE = 11
SIGMA = 1.5
C1 = 1e-4
C2 = 9e-4


def _gaussian_window() -> np.ndarray:
    offsets = np.arange(WINDOW_SIZE, dtype=np.float64) - (WINDOW_SIZE - 1) / 2
    window = np.exp(-(offsets**2) / (2 * SIGMA**2))
    return (window / window.sum()).astype(np.float32)


def _gaussian_filter_valid(x: jax.Array) -> jax.Array:
    """Separable 11x11 Gaussian filter of each channel of ``(B, H, W, C)``, 'valid' output."""
    channels = x.shape[-1]
    window = jnp.asarray(_gaussian_window(), x.dtype)
    for kernel_shape in ((WINDOW_SIZE, 1), (1, WINDOW_SIZE)):
        kernel = jnp.tile(window.reshape(*kernel_shape, 1, 1), (1, 1, 1, channels))
        x = jax.lax.conv_general_dilated(
            x,
            kernel,
            window_strides=(1, 1),
            padding="VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=channels,
        )
    return x


def ssim(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean SSIM between two image batches (module docstring gives the conventions).

    Arguments:
        a: ``(B, H, W, C)`` images in ``[0, 1]``, ``H, W >= 11``.
        b: ``(B, H, W, C)`` images in ``[0, 1]``.

    Returns:
        scalar mean of the SSIM map over batch, channels and valid pixels; 1 for identical images.
    """
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"ssim: expected two (B, H, W, C) arrays of one shape, got {a.shape} and {b.shape}")
    if min(a.shape[1:3]) < WINDOW_SIZE:
        raise ValueError(
            f"ssim: images must be at least {WINDOW_SIZE}x{WINDOW_SIZE} for the 'valid' Gaussian "
            f"window, got {a.shape[1]}x{a.shape[2]}"
        )
    mu_a = _gaussian_filter_valid(a)
    mu_b = _gaussian_filter_valid(b)
    var_a = _gaussian_filter_valid(a * a) - mu_a**2
    var_b = _gaussian_filter_valid(b * b) - mu_b**2
    cov = _gaussian_filter_valid(a * b) - mu_a * mu_b
    luminance = (2 * mu_a * mu_b + C1) / (mu_a**2 + mu_b**2 + C1)
    structure = (2 * cov + C2) / (var_a + var_b + C2)
    return jnp.mean(luminance * structure)


def ssim_loss(a: jax.Array, b: jax.Array) -> jax.Array:
    """``(1 - SSIM(a, b)) / 2``, in ``[0, 1]``; 0 for identical images.

    The halving follows kornia's ``ssim_loss`` used by CDDFuse; papers that write
    ``1 - SSIM`` (CAF, SMFNet) differ by a factor 2 that their loss weights absorb.

    Arguments:
        a: ``(B, H, W, C)`` images in ``[0, 1]``, ``H, W >= 11``.
        b: ``(B, H, W, C)`` images in ``[0, 1]``.

    Returns:
        scalar loss.
    """
    return (1.0 - ssim(a, b)) / 2.0
