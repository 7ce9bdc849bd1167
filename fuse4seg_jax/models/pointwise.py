"""Pointwise (1x1) convolutions and per-pixel dense layers whose reverse pass keeps only the input.

Differentiated by JAX's own rules, ``x @ W`` over a ``(B, H, W, C)`` map keeps ``x`` for the
kernel's gradient, and XLA:CPU also computes, during the forward pass, the transposed copy of
``x`` that the gradient's matrix product reads, and keeps both until the backward pass: one more
activation per layer, about five per Restormer block (``docs/conventions.md#memory``). Here the
reverse rule keeps ``x`` and the kernel and makes the copy wait for the output's cotangent
(``bilevel.schedule.after``).

:class:`PointwiseConv` and :class:`PointwiseLinear` are ``nnx.Conv(..., (1, 1))`` and
``nnx.Linear`` with that rule: the same parameters (names, shapes, initialisers) and values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from bilevel.schedule import after


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


def _dense(x: jax.Array, kernel: jax.Array, bias: nnx.Param | None) -> jax.Array:
    """``x @ kernel (+ bias)`` in ``x``'s dtype, the product by :func:`pointwise`."""
    y = pointwise(x, kernel.astype(x.dtype))
    return y if bias is None else y + bias[...].astype(x.dtype)
