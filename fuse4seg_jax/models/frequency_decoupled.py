"""The frequency-decoupled fusion leader (Fuse4Seg current version, CDDFuse shape), NHWC.

One encoder, shared by every modality, splits each image into low-frequency ("base") features
(a Restormer-shaped block with full 3x3 attention mixing) and high-frequency ("detail") features
(an invertible affine coupling). The fusion units (Fuse4Seg eq. 6) add the N modalities'
features and refine the sums (``H_low``: one base block; ``H_high``: one coupling layer), and the
decoder turns ``concat(low, high)`` into one image, min-max normalised per image (the text after
Fuse4Seg eq. 6).
Sizes: the paper preset is CDDFuse's (Fuse4Seg's leader), see
``docs/conventions.md#architectures``. Like CDDFuse's code, no convolution has a bias except the
couplings' 1x1 mixing conv. Unlike CDDFuse's phase II, the decoder adds no source image to its
output before the sigmoid: with N modalities there is no privileged one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.models.inn import CouplingStack
from fuse4seg_jax.models.pointwise import PointwiseConv
from fuse4seg_jax.models.registry import register
from fuse4seg_jax.models.restormer import RestormerBlock, base_block
from fuse4seg_jax.models.same_conv import SameConv

# Floor on an image's intensity range in min_max_per_image: a constant image maps to 0, not NaN.
_RANGE_EPS = 1e-6


def min_max_per_image(x: jax.Array) -> jax.Array:
    """Stretch each image of ``x: (B, H, W, C)`` to [0, 1]: min becomes 0, max becomes 1.

    Returns:
        ``(x - min) / max(max - min, 1e-6)`` with min and max over each image's ``H, W, C``;
        a constant image becomes all zeros.
    """
    lo = jnp.min(x, axis=(1, 2, 3), keepdims=True)
    hi = jnp.max(x, axis=(1, 2, 3), keepdims=True)
    span = hi - lo
    stretched = (x - lo) / jnp.maximum(span, _RANGE_EPS)
    # XLA may divide by multiplying with a reciprocal, leaving the max 1 ulp below 1; the max
    # pixel's value is the constant 1, so pinning it also leaves its (zero) gradient exact.
    return jnp.where((x == hi) & (span > _RANGE_EPS), 1.0, stretched)


def check_sizes(num_modalities: int, dim: int, heads: int) -> None:
    """Raise :class:`ConfigError` naming the size key if a fusion leader cannot be built."""
    if num_modalities < 2:
        raise ConfigError(f"num_modalities must be >= 2 to fuse, got {num_modalities}")
    if dim % heads:
        raise ConfigError(f"dim ({dim}) must be divisible by heads ({heads})")
    if dim % 2:
        raise ConfigError(f"dim must be even (the detail branch splits it in halves), got {dim}")


def check_images(x: jax.Array, channels: int, min_size: int = 1, even: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``x`` is ``(B, H, W, channels)``, ``H, W >= min_size``
    (and even if ``even``)."""
    if x.ndim != 4 or x.shape[-1] != channels:
        raise ConfigError(f"expected images of shape (B, H, W, {channels}), got {x.shape}")
    if min(x.shape[1:3]) < min_size:
        raise ConfigError(f"images must be at least {min_size} x {min_size}, got {x.shape[1:3]}")
    if even and (x.shape[1] % 2 or x.shape[2] % 2):
        raise ConfigError(f"images must have an even height and width (Haar squeeze), got {x.shape[1:3]}")


def fold_modalities(x: jax.Array) -> jax.Array:
    """``(B, H, W, N) -> (N * B, H, W, 1)``, modality-major, so a shared network sees one batch."""
    b, h, w, n = x.shape
    return jnp.moveaxis(x, -1, 0).reshape(n * b, h, w, 1)


class Encoder(nnx.Module):
    """Shared encoder: 3x3 embedding, Restormer blocks, then the base and detail branches.

    Call: ``x: (B, H, W, 1) -> (low, high)``, each ``(B, H, W, dim)``; ``H, W >= 2``.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        blocks: int,
        inn_layers: int,
        *,
        inn_haar: bool = False,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        self.embed = SameConv(1, dim, (3, 3), use_bias=False, rngs=rngs)
        self.blocks = nnx.List([RestormerBlock(dim, heads, remat=remat, rngs=rngs) for _ in range(blocks)])
        self.low = base_block(dim, heads, remat=remat, rngs=rngs)
        self.high = CouplingStack(dim, inn_layers, haar=inn_haar, rngs=rngs)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        features = self.embed(x)
        for block in self.blocks:
            features = block(features)
        return self.low(features), self.high(features)


class Decoder(nnx.Module):
    """``concat(features)`` -> 1x1 to ``dim`` -> Restormer blocks -> 3x3, LeakyReLU, 3x3 -> sigmoid.

    Arguments:
        in_dim: channels of the decoder's input (``2 * dim`` for ``concat(low, high)``).
        dim, heads, blocks: width, attention heads and number of Restormer blocks.
        rngs: parameter initialisation.

    Call: ``x: (B, H, W, in_dim) -> (B, H, W, 1)`` in (0, 1).
    """

    def __init__(
        self, in_dim: int, dim: int, heads: int, blocks: int, *, remat: bool = False, rngs: nnx.Rngs
    ):
        self.reduce = PointwiseConv(in_dim, dim, use_bias=False, rngs=rngs)
        self.blocks = nnx.List([RestormerBlock(dim, heads, remat=remat, rngs=rngs) for _ in range(blocks)])
        self.head = SameConv(dim, dim // 2, (3, 3), use_bias=False, rngs=rngs)
        self.out = SameConv(dim // 2, 1, (3, 3), use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.reduce(x)
        for block in self.blocks:
            x = block(x)
        return jax.nn.sigmoid(self.out(jax.nn.leaky_relu(self.head(x), negative_slope=0.01)))


@register(
    "fusion",
    "frequency_decoupled",
    paper={
        "dim": 64,
        "heads": 8,
        "encoder_blocks": 4,
        "decoder_blocks": 4,
        "inn_layers": 3,
        "inn_haar": False,
        "remat": False,
    },
    demo={
        "dim": 16,
        "heads": 2,
        "encoder_blocks": 1,
        "decoder_blocks": 1,
        "inn_layers": 1,
        "inn_haar": False,
        "remat": False,
    },
)
class FrequencyDecoupledFusion(nnx.Module):
    """Fuse N single-channel modalities through shared low/high-frequency features.

    Arguments:
        num_modalities: N >= 2, the channels of the input.
        dim: feature channels; even and divisible by ``heads``.
        heads: attention heads.
        encoder_blocks: Restormer blocks before the two branches.
        decoder_blocks: Restormer blocks in the decoder.
        inn_layers: coupling layers of the encoder's detail branch; the fusion unit has 1.
        inn_haar: squeeze the detail branch's couplings with a Haar wavelet (Fuse4Seg sec. 3.3.1's
            text; off by default, as CDDFuse's code, whose parameters the default matches).
        remat: recompute activations in the backward pass instead of storing them, piece by
            piece (each Restormer block's attention and feed-forward branch; the couplings'
            bottlenecks are always recomputed): the same values, less memory, about one more
            forward pass of compute (``docs/conventions.md#memory``). Not a size, but set like one
            (``model.fusion_sizes.frequency_decoupled.remat``).
        rngs: parameter initialisation.

    Spatial sizes: any ``H, W >= 2`` (the couplings reflect-pad by 1), odd or even; even and
    ``>= 4`` with ``inn_haar``.
    """

    def __init__(
        self,
        num_modalities: int,
        *,
        dim: int,
        heads: int,
        encoder_blocks: int,
        decoder_blocks: int,
        inn_layers: int,
        inn_haar: bool = False,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        check_sizes(num_modalities, dim, heads)
        self.num_modalities = num_modalities
        self.min_size = 4 if inn_haar else 2
        self.encoder = Encoder(
            dim, heads, encoder_blocks, inn_layers, inn_haar=inn_haar, remat=remat, rngs=rngs
        )
        self.fuse_low = base_block(dim, heads, remat=remat, rngs=rngs)
        self.fuse_high = CouplingStack(dim, 1, rngs=rngs)
        self.decoder = Decoder(2 * dim, dim, heads, decoder_blocks, remat=remat, rngs=rngs)

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        """Fuse the modalities of ``x``.

        Arguments:
            x: ``(B, H, W, N)``, one channel per modality, values in [0, 1].

        Returns:
            ``fused: (B, H, W, 1)`` stretched to [0, 1] per image; ``low`` and ``high``:
            ``(N, B, H, W, dim)``, each modality's features (for the decomposition loss).
        """
        check_images(x, self.num_modalities, min_size=self.min_size, even=self.encoder.high.haar)
        b, h, w, n = x.shape
        low, high = self.encoder(fold_modalities(x))
        low = low.reshape(n, b, h, w, -1)
        high = high.reshape(n, b, h, w, -1)
        fused_low = self.fuse_low(jnp.sum(low, axis=0))
        fused_high = self.fuse_high(jnp.sum(high, axis=0))
        image = self.decoder(jnp.concatenate([fused_low, fused_high], axis=-1))
        return {"fused": min_max_per_image(image), "low": low, "high": high}

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Low- and high-frequency features of single-modality images.

        Arguments:
            x: ``(B, H, W, 1)`` in [0, 1].

        Returns:
            ``(low, high)``, each ``(B, H, W, dim)``.
        """
        check_images(x, 1, min_size=self.min_size, even=self.encoder.high.haar)
        return self.encoder(x)

    def reconstruct(self, x: jax.Array) -> dict[str, jax.Array]:
        """Encoder + decoder as an autoencoder (pre-training); the fusion units are unused.

        Arguments:
            x: ``(B, H, W, 1)`` in [0, 1].

        Returns:
            ``image: (B, H, W, 1)``, the sigmoid output (not min-max stretched, so it can match
            ``x``); ``low, high: (B, H, W, dim)``.
        """
        low, high = self.encode(x)
        image = self.decoder(jnp.concatenate([low, high], axis=-1))
        return {"image": image, "low": low, "high": high}

    def autoencode(self, x: jax.Array) -> dict[str, jax.Array]:
        """Pre-training pass: every modality through :meth:`reconstruct`, as one batch.

        Arguments:
            x: ``(B, H, W, N)`` in [0, 1].

        Returns:
            ``images: (N, B, H, W, 1)`` and ``low, high: (N, B, H, W, dim)``, modality-major (the
            contract of every leader that supports pre-training).
        """
        check_images(x, self.num_modalities, min_size=self.min_size, even=self.encoder.high.haar)
        b, h, w, n = x.shape
        out = self.reconstruct(fold_modalities(x))
        return {
            "images": out["image"].reshape(n, b, h, w, 1),
            "low": out["low"].reshape(n, b, h, w, -1),
            "high": out["high"].reshape(n, b, h, w, -1),
        }
