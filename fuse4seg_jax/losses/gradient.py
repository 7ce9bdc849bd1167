"""Sobel gradient magnitude and the spatial gradient loss (Fuse4Seg L_grad, CAF, SMFNet)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fuse4seg_jax.losses._checks import check_fused_and_sources

# Cross-correlation kernels (as ``torch.nn.functional.conv2d`` applies them in the reference
# code): x grows to the right, y upwards; signs do not matter once absolute values are taken.
_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], np.float32)
_SOBEL_Y = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]], np.float32)


def _depthwise_3x3(x: jax.Array, kernel: np.ndarray) -> jax.Array:
    channels = x.shape[-1]
    weights = jnp.tile(jnp.asarray(kernel, x.dtype)[:, :, None, None], (1, 1, 1, channels))
    return jax.lax.conv_general_dilated(
        x,
        weights,
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
    )


def sobel_magnitude(x: jax.Array, pad_mode: str = "constant") -> jax.Array:
    """Sobel gradient magnitude ``|g_x| + |g_y|`` per channel, same spatial size as the input.

    The image is padded by one pixel with ``jnp.pad(mode=pad_mode)`` before the 3x3 Sobel
    filters. The default ``"constant"`` (zero) padding is what the CDDFuse and CAF reference code
    do (``conv2d(padding=1)``): it reports an edge at the border of an image that is not zero
    there, which is harmless for skull-stripped MRI whose background is 0. ``"edge"`` makes a
    constant image have zero gradient everywhere.

    Arguments:
        x: ``(B, H, W, C)`` images (each channel filtered separately).
        pad_mode: a ``jnp.pad`` mode, e.g. ``"constant"``, ``"edge"``, ``"reflect"``.

    Returns:
        ``(B, H, W, C)`` non-negative gradient magnitudes (an interior unit step of height 1
        gives 4).
    """
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=pad_mode)
    return jnp.abs(_depthwise_3x3(padded, _SOBEL_X)) + jnp.abs(_depthwise_3x3(padded, _SOBEL_Y))


def gradient_loss(fused: jax.Array, sources: jax.Array, pad_mode: str = "constant") -> jax.Array:
    """Mean absolute difference of ``|grad fused|`` and the max over sources of ``|grad source|``.

    ``mean | S(fused) - max_n S(source_n) |`` with ``S`` = :func:`sobel_magnitude`; the mean is
    over all pixels of the batch (the ``1 / HW`` normalised L1 of CAF and Fuse4Seg v1 eq. 13).
    With one source it is SMFNet's reconstruction term ``|| |grad V| - |grad V_hat| ||_1``.

    Arguments:
        fused: ``(B, H, W, 1)`` fused image.
        sources: ``(B, H, W, N)`` the N source images as channels.
        pad_mode: padding of :func:`sobel_magnitude`.

    Returns:
        scalar loss, 0 exactly when the fused gradient equals the largest source gradient.
    """
    check_fused_and_sources("gradient_loss", fused, sources)
    target = jnp.max(sobel_magnitude(sources, pad_mode), axis=-1, keepdims=True)
    return jnp.mean(jnp.abs(sobel_magnitude(fused, pad_mode) - target))
