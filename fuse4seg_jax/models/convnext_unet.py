"""The segmentation follower: a ConvNeXt U-Net with an attention bottleneck (Fuse4Seg sec. 3.4).

Layout ``(B, H, W, C)``. The encoder is a stem (3x3 conv + LayerNorm, stride 1) followed by one
stage of ConvNeXt blocks per entry of ``widths``, with a LayerNorm + 2x2 stride-2 conv between
stages; at the lowest resolution, ``bottleneck_blocks`` pre-norm transformer blocks (multi-head
self-attention over all pixels, MLP x4) model long-range context. The decoder mirrors the encoder:
a 2x2 stride-2 transposed conv, the skip of the same level concatenated and mixed back to that
level's width by a 1x1 conv, then as many ConvNeXt blocks as the encoder stage had. A LayerNorm
and a 1x1 conv give ``num_classes`` logits at input resolution.

The paper names the ingredients (7x7 depthwise ConvNeXt blocks, skips, MSA bottleneck, 4 classes)
but not their sizes; ours are choices:

- widths (32, 64, 128, 256), two blocks per stage, one bottleneck block with 4 heads: on
  224 x 224 slices the bottleneck sees 28 x 28 = 784 tokens, cheap enough for full attention.
- a stride-1 stem rather than ConvNeXt's 4x4 patchify stem, so the finest skip is at full
  resolution (tumour sub-regions are a few pixels thick); hence H and W must be divisible by
  ``2 ** (len(widths) - 1)`` only.
- no positional embedding in the bottleneck: the convolutions before it already encode position
  (zero padding), and a learned table would tie the model to one image size.
- LayerNorm only (eps 1e-6 as ConvNeXt), no BatchNorm: the follower is trained in bi-level loops.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.models.channel_sum import channel_sum, per_channel
from fuse4seg_jax.models.grouped_conv import GroupedConv
from fuse4seg_jax.models.pointwise import PatchConv, PatchConvTranspose, PointwiseLinear
from fuse4seg_jax.models.registry import register
from fuse4seg_jax.models.remat import apply_block
from fuse4seg_jax.models.restormer import ChannelLayerNorm
from fuse4seg_jax.models.same_conv import SameConv

_LN_EPS = 1e-6


def _gelu(x: jax.Array) -> jax.Array:
    # exact (erf) GELU, as ConvNeXt and ViT use.
    return jax.nn.gelu(x, approximate=False)


def fan_in_bias(fan_in: int):
    """PyTorch's default conv bias initialiser, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    Skull-stripped MRI is exactly zero outside the brain, where a conv's output is its bias. With
    Flax's zero bias every channel is equal there, the next LayerNorm divides by sqrt(eps), and the
    stem's gradients reached ~1e8 at initialisation on phantom slices (vs ~1 with this init).
    """
    bound = fan_in**-0.5

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


BLOCKS = ("v1", "v2")
"""ConvNeXt block versions: ``v1`` (layer scale) and ``v2`` (global response normalisation)."""


class GlobalResponseNorm(nnx.Module):
    """ConvNeXt V2's global response normalisation over a ``(B, H, W, C)`` map.

    Each channel's L2 norm over the pixels, ``g_c``, is divided by its mean over channels, and the
    input is rescaled by that ratio: ``x + gamma * (x * g_c / (mean_c g + eps)) + beta``, with
    ``gamma`` and ``beta`` starting at zero (so the layer starts as the identity). Channels
    compete for a share of the map's response, which counters the feature collapse of the 4C
    expansion that ConvNeXt V2 reports.
    """

    def __init__(self, dim: int, *, eps: float = 1e-6):
        self.eps = eps
        self.gamma = nnx.Param(jnp.zeros((dim,), jnp.float32))
        self.beta = nnx.Param(jnp.zeros((dim,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, H, W, C) -> (B, H, W, C)``."""
        g = jnp.sqrt(jax.vmap(channel_sum)(jnp.square(x)))[:, None, None, :]
        ratio = g / (jnp.mean(g, axis=-1, keepdims=True) + self.eps)
        return x + per_channel(self.gamma[...], x.shape) * (x * ratio) + per_channel(self.beta[...], x.shape)


class ConvNeXtBlock(nnx.Module):
    """k x k (7 x 7) depthwise conv, LayerNorm, 1x1 to 4C, GELU, 1x1 back to C, residual.

    ``block="v1"`` (ConvNeXt) scales the branch by a learned per-channel layer scale (started at
    ``layer_scale_init``) before the residual sum; ``block="v2"`` (ConvNeXt V2) has no layer scale
    and a global response normalisation after the GELU instead.
    """

    def __init__(
        self,
        dim: int,
        *,
        kernel_size: int = 7,
        block: str = "v1",
        layer_scale_init: float = 1e-6,
        rngs: nnx.Rngs,
    ):
        self.depthwise = GroupedConv(
            dim,
            dim,
            (kernel_size, kernel_size),
            groups=dim,
            bias_init=fan_in_bias(kernel_size**2),
            rngs=rngs,
        )
        self.norm = ChannelLayerNorm(dim, eps=_LN_EPS, rngs=rngs)
        self.expand = PointwiseLinear(dim, 4 * dim, rngs=rngs)
        self.project = PointwiseLinear(4 * dim, dim, rngs=rngs)
        if block == "v1":
            self.layer_scale = nnx.Param(jnp.full((dim,), layer_scale_init, jnp.float32))
        else:
            self.grn = GlobalResponseNorm(4 * dim)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, H, W, C) -> (B, H, W, C)``."""
        # rematerialised: the backward pass keeps the expanded map only, not GELU's intermediates
        hidden = apply_block(self, self.expand(self.norm(self.depthwise(x))), remat=True, method="activate")
        if hasattr(self, "grn"):
            return x + self.project(hidden)
        return x + per_channel(self.layer_scale[...], x.shape) * self.project(hidden)

    def activate(self, x: jax.Array) -> jax.Array:
        """GELU (then GRN for ``v2``) on the expanded ``(B, H, W, 4C)`` map."""
        return self.grn(_gelu(x)) if hasattr(self, "grn") else _gelu(x)


class SelfAttention(nnx.Module):
    """Multi-head scaled dot-product self-attention over the pixels of a feature map."""

    def __init__(self, dim: int, num_heads: int, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.qkv = PointwiseLinear(dim, 3 * dim, rngs=rngs)
        self.out = PointwiseLinear(dim, dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, H, W, C) -> (B, H, W, C)``; attention over the H*W tokens."""
        b, h, w, c = x.shape
        q, k, v = jnp.split(self.qkv(x).reshape(b, h * w, 3, self.num_heads, c // self.num_heads), 3, axis=2)
        attended = jax.nn.dot_product_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0])
        return self.out(attended.reshape(b, h, w, c))


class TransformerBlock(nnx.Module):
    """Pre-norm transformer block: x + MSA(LN(x)), then x + MLP(LN(x)) with hidden 4C."""

    def __init__(self, dim: int, num_heads: int, *, rngs: nnx.Rngs):
        self.norm_attention = ChannelLayerNorm(dim, eps=_LN_EPS, rngs=rngs)
        self.attention = SelfAttention(dim, num_heads, rngs=rngs)
        self.norm_mlp = ChannelLayerNorm(dim, eps=_LN_EPS, rngs=rngs)
        self.expand = PointwiseLinear(dim, 4 * dim, rngs=rngs)
        self.project = PointwiseLinear(4 * dim, dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, H, W, C) -> (B, H, W, C)``."""
        x = x + self.attention(self.norm_attention(x))
        return x + self.project(_gelu(self.expand(self.norm_mlp(x))))


class Downsample(nnx.Module):
    """LayerNorm then a 2x2 stride-2 conv: halves H and W, changes the width."""

    def __init__(self, dim_in: int, dim_out: int, *, rngs: nnx.Rngs):
        self.norm = ChannelLayerNorm(dim_in, eps=_LN_EPS, rngs=rngs)
        self.conv = PatchConv(dim_in, dim_out, 2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, H, W, C_in) -> (B, H/2, W/2, C_out)``."""
        return self.conv(self.norm(x))


class UpMerge(nnx.Module):
    """2x2 stride-2 transposed conv, concatenation with the skip, 1x1 conv to the skip's width."""

    def __init__(self, dim_in: int, dim_out: int, *, rngs: nnx.Rngs):
        self.up = PatchConvTranspose(dim_in, dim_out, 2, rngs=rngs)
        self.merge = PointwiseLinear(2 * dim_out, dim_out, rngs=rngs)

    def __call__(self, x: jax.Array, skip: jax.Array) -> jax.Array:
        """``(B, H, W, C_in), (B, 2H, 2W, C_out) -> (B, 2H, 2W, C_out)``."""
        return self.merge(jnp.concatenate([self.up(x), skip], axis=-1))


def _stage(dim: int, depth: int, kernel_size: int, block: str, rngs: nnx.Rngs) -> nnx.List:
    return nnx.List(
        [ConvNeXtBlock(dim, kernel_size=kernel_size, block=block, rngs=rngs) for _ in range(depth)]
    )


def _run(blocks: nnx.List, x: jax.Array, remat: bool) -> jax.Array:
    for block in blocks:
        x = apply_block(block, x, remat=remat)
    return x


@register(
    "segmentation",
    "convnext_unet",
    paper={
        "widths": (32, 64, 128, 256),
        "depths": (2, 2, 2, 2),
        "bottleneck_heads": 4,
        "bottleneck_blocks": 1,
        "kernel_size": 7,
        "block": "v2",
        "remat": False,
    },
    demo={
        "widths": (16, 32, 64),
        "depths": (1, 1, 1),
        "bottleneck_heads": 2,
        "kernel_size": 3,
        "block": "v1",
        "remat": False,
    },
)
class ConvNeXtUNet(nnx.Module):
    """ConvNeXt U-Net with a transformer bottleneck; see the module docstring for the layout.

    Registered as ``segmentation/convnext_unet``; the class itself is the registry constructor.
    Its paper preset holds the sizes chosen in the module docstring and ConvNeXt V2 blocks, as
    Fuse4Seg cites; the demo preset halves the widths, drops a level, takes 3 x 3 kernels and
    keeps v1 blocks (the demo's published scores were measured with them).

    Arguments:
        in_channels: input channels (1 for a fused image, N for the multi-channel baseline).
        num_classes: output classes (4: background, NCR, ED, ET).
        widths: channels per resolution level, finest first.
        depths: ConvNeXt blocks per encoder stage (and per matching decoder stage).
        bottleneck_heads: attention heads in the bottleneck; must divide ``widths[-1]``.
        bottleneck_blocks: transformer blocks at the lowest resolution.
        kernel_size: the blocks' depthwise kernel (ConvNeXt and the paper: 7; the CPU demo uses 3,
            which compiles and runs several times faster).
        block: ``"v2"`` ConvNeXt V2 blocks (global response normalisation, Fuse4Seg's choice) or
            ``"v1"`` ConvNeXt blocks (layer scale); see :class:`ConvNeXtBlock`.
        remat: keep only each block's input (ConvNeXt and bottleneck blocks) from the forward
            to the backward pass and recompute the block there: the same values, less memory,
            about one more forward pass of compute (``docs/conventions.md#memory``). Not a size,
            but set like one (``model.segmentation_sizes.convnext_unet.remat``). Forward-over-
            reverse Hessian-vector products (the implicit solvers) work with it.
        rngs: parameter initialisation keys.

    Raises:
        ConfigError: ``widths`` and ``depths`` of different lengths, heads not dividing the
            last width, or an unknown ``block``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 4,
        widths: Sequence[int],
        depths: Sequence[int],
        bottleneck_heads: int,
        bottleneck_blocks: int,
        kernel_size: int,
        block: str = "v1",
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        widths, depths = tuple(widths), tuple(depths)
        if block not in BLOCKS:
            raise ConfigError(f"convnext_unet: block {block!r} is not one of {', '.join(BLOCKS)}")
        if len(widths) != len(depths) or not widths:
            raise ConfigError(
                f"convnext_unet: widths {widths} and depths {depths} must be non-empty and of equal length"
            )
        if widths[-1] % bottleneck_heads:
            raise ConfigError(
                f"convnext_unet: bottleneck_heads {bottleneck_heads} must divide the last width {widths[-1]}"
            )
        self.in_channels = in_channels
        self.remat = remat
        self.divisor = 2 ** (len(widths) - 1)
        self.stem = SameConv(
            in_channels, widths[0], (3, 3), padding="SAME", bias_init=fan_in_bias(9 * in_channels), rngs=rngs
        )
        self.stem_norm = ChannelLayerNorm(widths[0], eps=_LN_EPS, rngs=rngs)
        self.encoder = nnx.List(
            [_stage(w, d, kernel_size, block, rngs) for w, d in zip(widths, depths, strict=True)]
        )
        self.downsample = nnx.List(
            [Downsample(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.bottleneck = nnx.List(
            [TransformerBlock(widths[-1], bottleneck_heads, rngs=rngs) for _ in range(bottleneck_blocks)]
        )
        self.upmerge = nnx.List(
            [UpMerge(b, a, rngs=rngs) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.decoder = nnx.List(
            [_stage(w, d, kernel_size, block, rngs) for w, d in zip(widths[:-1], depths[:-1], strict=True)]
        )
        self.head_norm = ChannelLayerNorm(widths[0], eps=_LN_EPS, rngs=rngs)
        self.head = PointwiseLinear(widths[0], num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Segment a batch of images.

        Arguments:
            x: ``(B, H, W, in_channels)`` float32 images; H and W divisible by
                ``2 ** (len(widths) - 1)``.

        Returns:
            ``(B, H, W, num_classes)`` logits (no softmax).

        Raises:
            ConfigError: wrong rank or channel count, or H or W not divisible.
        """
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ConfigError(
                f"convnext_unet expects (B, H, W, {self.in_channels}) images "
                f"(in_channels={self.in_channels}); got shape {x.shape}"
            )
        if x.shape[1] % self.divisor or x.shape[2] % self.divisor:
            raise ConfigError(
                f"convnext_unet: image size {x.shape[1]}x{x.shape[2]} is not divisible by "
                f"{self.divisor} (2 ** (len(widths) - 1) downsamplings); crop or pad the images"
            )
        x = self.stem_norm(self.stem(x))
        skips = []
        for level, blocks in enumerate(self.encoder):
            if level:
                x = self.downsample[level - 1](x)
            x = _run(blocks, x, self.remat)
            skips.append(x)
        x = _run(self.bottleneck, x, self.remat)
        for level in reversed(range(len(self.decoder))):
            x = _run(self.decoder[level], self.upmerge[level](x, skips[level]), self.remat)
        return self.head(self.head_norm(x))
