"""Invertible affine coupling (the high-frequency "detail" branch), NHWC.

Sizes follow CDDFuse's ``DetailFeatureExtraction`` (``docs/conventions.md#architectures``). A layer splits the
channels into halves ``z1, z2`` and computes

    [z1, z2] <- split(W [z1, z2] + b)          (1x1 conv with bias: mixes the halves)
    z2 <- z2 + phi(z1)
    z1 <- z1 * exp(rho(z2)) + eta(z2)

Every step is invertible given the outputs (the 1x1 conv while ``W`` is non-singular), so the
branch loses no information; :meth:`CouplingStack.inverse` undoes :meth:`CouplingStack.__call__`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fuse4seg_jax.models.grouped_conv import GroupedConv
from fuse4seg_jax.models.pointwise import PointwiseConv
from fuse4seg_jax.models.remat import apply_block


class InvertedBottleneck(nnx.Module):
    """``1x1 c -> 2c``, ReLU6, reflection pad 1 + depthwise 3x3, ReLU6, ``1x1 2c -> c``.

    No bias, no normalisation and no inner residual (a residual here made gradients explode for
    users of the reference code).
    Its activations are recomputed in the backward pass, which keeps only its input.

    Arguments:
        channels: input and output channels ``c``.
        expansion: hidden width as a multiple of ``c`` (2 in the reference).
        rngs: parameter initialisation.

    Call: ``x: (B, H, W, c) -> (B, H, W, c)``; needs ``H, W >= 2`` for the reflection pad.
    """

    def __init__(self, channels: int, *, expansion: int = 2, rngs: nnx.Rngs):
        hidden = channels * expansion
        self.expand = PointwiseConv(channels, hidden, use_bias=False, rngs=rngs)
        self.depthwise = GroupedConv(
            hidden, hidden, (3, 3), groups=hidden, padding="VALID", use_bias=False, rngs=rngs
        )
        self.project = PointwiseConv(hidden, channels, use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        # Always rematerialised: its input is half as wide as its hidden map, and otherwise
        # XLA:CPU keeps the reflection pad's pieces to rebuild the projection's input in the
        # backward pass (a coupling layer: 22 activations of its input stored, 3 rematerialised;
        # docs/conventions.md#memory). The price is the bottleneck's forward pass once more.
        return apply_block(self, x, remat=True, method="bottleneck")

    def bottleneck(self, x: jax.Array) -> jax.Array:
        """The bottleneck's computation, ``(B, H, W, c) -> (B, H, W, c)``."""
        x = jnp.pad(jax.nn.relu6(self.expand(x)), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        return self.project(jax.nn.relu6(self.depthwise(x)))


class AffineCoupling(nnx.Module):
    """One invertible coupling layer on ``(z1, z2)``, each ``(B, H, W, C/2)``.

    Arguments:
        dim: total channels ``C`` (even); each half has ``C/2``.
        rngs: parameter initialisation.
    """

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        if dim % 2:
            raise ValueError(f"the coupling splits channels in halves; dim {dim} is odd")
        half = dim // 2
        # Orthogonal start (condition number 1): a default random 64 x 64 kernel has a condition
        # number around 10^3, which alone costs three digits of the inverse in float32.
        self.mix = PointwiseConv(
            dim, dim, use_bias=True, kernel_init=nnx.initializers.orthogonal(), rngs=rngs
        )
        self.phi = InvertedBottleneck(half, rngs=rngs)
        self.rho = InvertedBottleneck(half, rngs=rngs)
        self.eta = InvertedBottleneck(half, rngs=rngs)

    def __call__(self, z1: jax.Array, z2: jax.Array) -> tuple[jax.Array, jax.Array]:
        z1, z2 = jnp.split(self.mix(jnp.concatenate([z1, z2], axis=-1)), 2, axis=-1)
        z2 = z2 + self.phi(z1)
        z1 = z1 * jnp.exp(self.rho(z2)) + self.eta(z2)
        return z1, z2

    def inverse(self, z1: jax.Array, z2: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Undo :meth:`__call__`: given its outputs ``(z1, z2)``, return its inputs."""
        z1 = (z1 - self.eta(z2)) * jnp.exp(-self.rho(z2))
        z2 = z2 - self.phi(z1)
        kernel = self.mix.kernel[...][0, 0]  # (in, out): y = x @ kernel + bias
        y = jnp.concatenate([z1, z2], axis=-1) - self.mix.bias[...]
        x = jnp.linalg.solve(kernel.T, y.reshape(-1, y.shape[-1]).T).T.reshape(y.shape)
        return tuple(jnp.split(x, 2, axis=-1))


def haar_squeeze(x: jax.Array) -> jax.Array:
    """The orthonormal 2-D Haar transform of each 2 x 2 block: ``(B, H, W, C) -> (B, H/2, W/2, 4C)``.

    The channels are the four sub-bands, each ``C`` wide: the block's average (LL), then its
    differences across columns (LH), across rows (HL) and along the diagonal (HH), each scaled by
    1/2 so that the transform is orthonormal (and its own inverse, see :func:`haar_unsqueeze`).
    ``H`` and ``W`` must be even.
    """
    a, b = x[:, 0::2, 0::2], x[:, 0::2, 1::2]
    c, d = x[:, 1::2, 0::2], x[:, 1::2, 1::2]
    return 0.5 * jnp.concatenate([a + b + c + d, a - b + c - d, a + b - c - d, a - b - c + d], axis=-1)


def haar_unsqueeze(y: jax.Array) -> jax.Array:
    """Undo :func:`haar_squeeze`: ``(B, H/2, W/2, 4C) -> (B, H, W, C)``."""
    ll, lh, hl, hh = jnp.split(y, 4, axis=-1)
    # the 4 x 4 Haar matrix is symmetric and orthogonal: the same sums give the pixels back
    a, b = ll + lh + hl + hh, ll - lh + hl - hh
    c, d = ll + lh - hl - hh, ll - lh - hl + hh
    top = jnp.stack([a, b], axis=3).reshape(a.shape[0], a.shape[1], 2 * a.shape[2], -1)
    bottom = jnp.stack([c, d], axis=3).reshape(top.shape)
    return 0.5 * jnp.stack([top, bottom], axis=2).reshape(a.shape[0], 2 * a.shape[1], top.shape[2], -1)


class CouplingStack(nnx.Module):
    """``layers`` affine couplings applied in turn on the two channel halves of ``x``.

    Arguments:
        dim: channels ``C`` (even).
        layers: number of coupling layers (3 in the encoder's detail branch, 1 as fusion unit).
        haar: squeeze with :func:`haar_squeeze` before the couplings (which then work on ``4C``
            channels at half resolution) and unsqueeze after, as Fuse4Seg's section 3.3.1
            describes; CDDFuse's code has no squeeze (the default).
        rngs: parameter initialisation.

    Call: ``x: (B, H, W, C) -> (B, H, W, C)``; needs ``H, W >= 2`` (even and ``>= 4`` with ``haar``).
    """

    def __init__(self, dim: int, layers: int, *, haar: bool = False, rngs: nnx.Rngs):
        self.haar = haar
        width = 4 * dim if haar else dim
        self.layers = nnx.List([AffineCoupling(width, rngs=rngs) for _ in range(layers)])

    def __call__(self, x: jax.Array) -> jax.Array:
        z1, z2 = jnp.split(haar_squeeze(x) if self.haar else x, 2, axis=-1)
        for layer in self.layers:
            z1, z2 = layer(z1, z2)
        y = jnp.concatenate([z1, z2], axis=-1)
        return haar_unsqueeze(y) if self.haar else y

    def inverse(self, y: jax.Array) -> jax.Array:
        """Undo :meth:`__call__`: ``inverse(self(x)) == x`` up to float rounding."""
        z1, z2 = jnp.split(haar_squeeze(y) if self.haar else y, 2, axis=-1)
        for layer in reversed(self.layers):
            z1, z2 = layer.inverse(z1, z2)
        x = jnp.concatenate([z1, z2], axis=-1)
        return haar_unsqueeze(x) if self.haar else x
