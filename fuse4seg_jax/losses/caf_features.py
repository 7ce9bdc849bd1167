"""A fixed, untrained convolutional feature network for CAF's perceptual terms.

CAF measures its perceptual terms on VGG-16 layers; no pre-trained VGG can be downloaded here, and
a network that trains with the fusion network would let the terms chase a moving target. So the
search and every loss of its space use two fixed random layers instead: a 3x3 conv to 8 channels
+ ReLU, a 2x2 average pool, a 3x3 conv to 16 channels + ReLU, He-normal weights drawn from a fixed
key (the same numbers in every run and process). Random conv features still compare local
structure at two scales, which is what the terms are for; ``docs/caf_search.md#perceptual-features``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_WIDTHS = (8, 16)
_SEED = 2024


def _kernels(dtype: jnp.dtype) -> list[jax.Array]:
    key = jax.random.key(_SEED)
    kernels, channels = [], 1
    for width, k in zip(_WIDTHS, jax.random.split(key, len(_WIDTHS)), strict=True):
        scale = jnp.sqrt(2.0 / (9 * channels)).astype(dtype)
        kernels.append(scale * jax.random.normal(k, (3, 3, channels, width), dtype))
        channels = width
    return kernels


def _conv_relu(x: jax.Array, kernel: jax.Array) -> jax.Array:
    out = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jax.nn.relu(out)


def fixed_conv_features(x: jax.Array) -> list[jax.Array]:
    """Two feature maps of ``x``: ``(B, H, W, 8)`` and ``(B, H // 2, W // 2, 16)``.

    Arguments:
        x: ``(B, H, W, 1)`` images (any float dtype; the weights take it).

    Returns:
        The two layers' outputs, differentiable in ``x``.
    """
    first_kernel, second_kernel = _kernels(x.dtype)
    first = _conv_relu(x, first_kernel)
    b, h, w, c = first.shape
    pooled = first[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    return [first, _conv_relu(pooled, second_kernel)]
