"""Visual saliency maps (VSM) and the saliency masks of CAF's masked pixel losses.

The VSM of Ma et al. (2017), used by TarDAL and CAF: a pixel is salient when its grey level
differs from those of many other pixels of the same image,
``S(p) = sum_q |g(p) - g(q)|`` over all pixels q, with ``g = round(255 x)`` the 8-bit grey level,
then divided by the image's maximum (an all-constant image gets ``S = 0``). Through the 256-bin
histogram this costs O(HW + 256^2) per image instead of O((HW)^2).

Only CAF's search-space losses (:mod:`fuse4seg_jax.losses.caf`) use these masks, and no training
stage or command uses those yet: a later issue wires them into the CAF loss-weight search.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_LEVELS = 256


def visual_saliency_map(x: jax.Array) -> jax.Array:
    """Per-image, per-channel VSM normalised to a maximum of 1 (module docstring).

    Not differentiable (grey levels are quantised): the result carries no gradient.

    Arguments:
        x: ``(B, H, W, C)`` images in ``[0, 1]``.

    Returns:
        ``(B, H, W, C)`` saliency in ``[0, 1]``.
    """
    batch, height, width, channels = x.shape
    levels = jnp.round(jnp.clip(jax.lax.stop_gradient(x), 0.0, 1.0) * (_LEVELS - 1))
    levels = levels.astype(jnp.int32).transpose(0, 3, 1, 2).reshape(batch * channels, -1)
    histograms = jax.vmap(lambda v: jnp.bincount(v, length=_LEVELS))(levels).astype(jnp.float32)
    grey = jnp.arange(_LEVELS, dtype=jnp.float32)
    contrast = jnp.abs(grey[:, None] - grey[None, :])
    saliency_per_level = histograms @ contrast
    saliency = jnp.take_along_axis(saliency_per_level, levels, axis=1)
    peak = jnp.max(saliency, axis=1, keepdims=True)
    saliency = jnp.where(peak > 0, saliency / jnp.where(peak > 0, peak, 1.0), 0.0)
    saliency = saliency.reshape(batch, channels, height, width).transpose(0, 2, 3, 1)
    return saliency.astype(x.dtype)


def saliency_masks(sources: jax.Array) -> jax.Array:
    """CAF's saliency masks: each source's share of the summed VSMs, pixel by pixel.

    ``M_n = S_n / sum_m S_m`` with ``S_n`` = :func:`visual_saliency_map` of source n, and
    ``M_n = 1 / N`` where every source has zero saliency. The masks sum to 1 at every pixel; for
    two sources ``M_2 = 1 - M_1``, the paper's ``M`` and ``M~`` (CAF sec. 3.3,
    "Mask * I_ir + (1 - Mask) * I_vis").

    Arguments:
        sources: ``(B, H, W, N)`` source images in ``[0, 1]``.

    Returns:
        ``(B, H, W, N)`` masks in ``[0, 1]``, without gradient.
    """
    saliency = visual_saliency_map(sources)
    total = jnp.sum(saliency, axis=-1, keepdims=True)
    uniform = jnp.full_like(saliency, 1.0 / sources.shape[-1])
    return jnp.where(total > 0, saliency / jnp.where(total > 0, total, 1.0), uniform)
