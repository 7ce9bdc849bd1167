"""Pointwise (1x1) convolutions and per-pixel dense layers whose reverse pass keeps only the input.

Differentiated by JAX's own rules, ``x @ W`` over a ``(B, H, W, C)`` map keeps ``x`` for the
kernel's gradient, and XLA:CPU also computes, during the forward pass, the transposed copy of
``x`` that the gradient's matrix product reads, and keeps both until the backward pass: one more
activation per layer, about five per Restormer block (``docs/conventions.md#memory``). Here the
reverse rule keeps ``x`` and the kernel and makes the copy wait for the output's cotangent
(``bilevel.schedule.after``).

:class:`PointwiseConv` and :class:`PointwiseLinear` are ``nnx.Conv(..., (1, 1))`` and
``nnx.Linear`` with that rule: the same parameters (names, shapes, initialisers) and values.
:class:`PatchConv` and :class:`PatchConvTranspose` are the ``p x p``, stride-``p`` convolution
and transposed convolution (downsampling and upsampling) as dense layers on patches, likewise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from bilevel.schedule import after
from fuse4seg_jax.models.channel_sum import add_bias


def _matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jnp.einsum("...i,io->...o", x, kernel)


@jax.custom_vjp
def pointwise(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``x @ kernel`` over the last axis: ``(..., C_in), (C_in, C_out) -> (..., C_out)``.

    Reverse mode only, like every custom VJP; forward-over-reverse products (``jax.jvp`` of a
    gradient, as the implicit solvers' Hessian-vector products) work, since the rules below are
    plain differentiable code.
    """
    return _matmul(x, kernel)


def _pointwise_fwd(x, kernel):
    # the plain product, not `pointwise`: a JVP of this rule must not meet the custom VJP again
    return _matmul(x, kernel), (x, kernel)


def _pointwise_bwd(residuals, cotangent):
    x, kernel = after(residuals, cotangent)
    x_cotangent = jnp.einsum("...o,io->...i", cotangent, kernel)
    kernel_cotangent = jnp.einsum("...i,...o->io", x, cotangent)
    return x_cotangent, kernel_cotangent


pointwise.defvjp(_pointwise_fwd, _pointwise_bwd)


class PointwiseConv(nnx.Conv):
    """``nnx.Conv(in_features, out_features, (1, 1), ...)`` computed by :func:`pointwise`.

    Call: ``(B, H, W, in_features) -> (B, H, W, out_features)``.
    """

    def __init__(self, in_features: int, out_features: int, **kwargs):
        super().__init__(in_features, out_features, (1, 1), **kwargs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _dense(x, self.kernel[...][0, 0], self.bias)


class PointwiseLinear(nnx.Linear):
    """``nnx.Linear`` computed by :func:`pointwise`: ``(..., in_features) -> (..., out_features)``."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return _dense(x, self.kernel[...], self.bias)


class PatchConv(nnx.Conv):
    """``nnx.Conv(in_features, out_features, (p, p), strides=(p, p), padding="VALID")`` as a dense
    layer on each ``p x p`` patch, by :func:`pointwise`.

    XLA:CPU computes the kernel gradient of a strided convolution as a convolution whose window
    is the whole image: 80 to 110 ms per downsampling of the paper-size follower at 2 x 224 x 224.
    On patches it is one matrix product.

    Call: ``(B, H, W, in_features) -> (B, H / p, W / p, out_features)``; ``p`` divides ``H`` and ``W``.
    """

    def __init__(self, in_features: int, out_features: int, patch: int, **kwargs):
        super().__init__(in_features, out_features, **_strided(patch), **kwargs)

    def __call__(self, x: jax.Array) -> jax.Array:
        patches = _to_patches(x, self.kernel_size[0])
        return _dense(patches, self.kernel[...].reshape(patches.shape[-1], -1), self.bias)


class PatchConvTranspose(nnx.ConvTranspose):
    """``nnx.ConvTranspose(in_features, out_features, (p, p), strides=(p, p), padding="VALID")``
    as a dense layer from each pixel to a ``p x p`` patch, by :func:`pointwise` (see :class:`PatchConv`).

    Call: ``(B, H, W, in_features) -> (B, p H, p W, out_features)``.
    """

    def __init__(self, in_features: int, out_features: int, patch: int, **kwargs):
        super().__init__(in_features, out_features, **_strided(patch), **kwargs)

    def __call__(self, x: jax.Array) -> jax.Array:
        # the transposed convolution meets its kernel flipped: output pixel (p h + i, p w + j) is
        # x[h, w] times kernel[p - 1 - i, p - 1 - j]
        kernel = jnp.flip(self.kernel[...], (0, 1)).transpose(2, 0, 1, 3).reshape(x.shape[-1], -1)
        y = _from_patches(_dense(x, kernel, None), self.kernel_size[0])
        return add_bias(y, self.bias)


def _strided(patch: int) -> dict:
    """The ``nnx.Conv`` / ``nnx.ConvTranspose`` arguments of a ``p x p``, stride-``p``, unpadded layer."""
    return {"kernel_size": (patch, patch), "strides": (patch, patch), "padding": "VALID"}


def _to_patches(x: jax.Array, p: int) -> jax.Array:
    """``(B, H, W, C) -> (B, H / p, W / p, p * p * C)``, a patch's pixels in (row, column, channel) order."""
    b, h, w, c = x.shape
    return x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h // p, w // p, -1)


def _from_patches(y: jax.Array, p: int) -> jax.Array:
    """The inverse of :func:`_to_patches`: ``(B, H, W, p * p * C) -> (B, p H, p W, C)``."""
    b, h, w, _ = y.shape
    return y.reshape(b, h, w, p, p, -1).transpose(0, 1, 3, 2, 4, 5).reshape(b, h * p, w * p, -1)


def _dense(x: jax.Array, kernel: jax.Array, bias: nnx.Param | None) -> jax.Array:
    """``x @ kernel (+ bias)`` in ``x``'s dtype, the product by :func:`pointwise`."""
    return add_bias(pointwise(x, kernel.astype(x.dtype)), bias)
