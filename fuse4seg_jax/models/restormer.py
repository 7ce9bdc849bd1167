"""Restormer building blocks (NHWC): channel LayerNorm, MDTA attention, GDFN feed-forward.

Shared by the frequency-decoupled fusion leader (encoder, decoder, low-frequency "base" branch)
and by other models that want transposed (channel-to-channel) attention, which costs O(H*W*C^2)
and so stays linear in the number of pixels. Sizes follow CDDFuse's Restormer
(``docs/conventions.md#architectures``): convolutions without bias unless ``bias=True``, zero
``SAME`` padding.

Public API:

- :class:`ChannelLayerNorm` ``(dim, *, rngs)``: LayerNorm over the channel axis of each pixel.
- :class:`MDTA` ``(dim, heads, *, qkv_mixing="depthwise", bias=False, rngs)``.
- :class:`GDFN` ``(dim, hidden, *, channels_per_group=1, bias=False, rngs)``.
- :class:`RestormerBlock` ``(dim, heads, *, expansion=2.0, bias=False, rngs, remat=False)``.
- :func:`base_block` ``(dim, heads, *, remat=False, rngs) -> RestormerBlock``: the low-frequency variant.
- :func:`layer_norm`, :func:`transposed_attention`, :func:`gated_gelu`: the element-wise pieces,
  each checkpointed by its module (recomputed in the backward pass; ``docs/conventions.md#memory``).

Every module maps ``(B, H, W, dim) -> (B, H, W, dim)`` and accepts any ``H, W >= 1``.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from bilevel import schedule
from fuse4seg_jax.models.channel_sum import per_channel
from fuse4seg_jax.models.grouped_conv import GroupedConv
from fuse4seg_jax.models.pointwise import PointwiseConv
from fuse4seg_jax.models.remat import apply_block
from fuse4seg_jax.models.same_conv import SameConv

# torch.nn.functional.normalize's floor on the norm, so all-zero rows normalise to zero, not NaN.
_L2_EPS = 1e-12


class ChannelLayerNorm(nnx.Module):
    """LayerNorm over channels at each pixel: scale and bias, biased variance, eps 1e-5.

    Arguments:
        dim: number of channels ``C``.
        rngs: unused (no random initialisation) but accepted for a uniform constructor.

    Call: ``x: (..., C) -> (..., C)``.
    """

    def __init__(self, dim: int, *, rngs: nnx.Rngs, eps: float = 1e-5):
        del rngs
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        # checkpointed: the backward pass keeps x only, not its centred and normalised copies
        norm = schedule.checkpoint(functools.partial(layer_norm, eps=self.eps))
        return norm(x, self.scale[...], self.bias[...])


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, *, eps: float) -> jax.Array:
    """LayerNorm over the last axis of ``x: (..., C)`` with ``scale, bias: (C,)``; biased variance."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * per_channel(scale, x.shape) + per_channel(bias, x.shape)


def _l2_normalise(x: jax.Array, axis: int) -> jax.Array:
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
    return x / jnp.maximum(norm, _L2_EPS)


def transposed_attention(qkv: jax.Array, temperature: jax.Array, *, heads: int) -> jax.Array:
    """MDTA's attention between channels: ``softmax(q k^T * t) v`` per head.

    Arguments:
        qkv: ``(B, H, W, 3C)``, ``q, k, v`` concatenated; q and k are L2-normalised along the
            ``H*W`` pixels of each of their ``C/heads`` channels per head.
        temperature: ``(heads,)``, multiplies each head's ``(C/heads, C/heads)`` logits.
        heads: number of heads; divides ``C``.

    Returns:
        ``(B, H, W, C)``.
    """
    b, h, w, c3 = qkv.shape
    c = c3 // 3

    def heads_first(t: jax.Array) -> jax.Array:  # (B, H, W, C) -> (B, heads, C/heads, H*W)
        return t.reshape(b, h * w, heads, c // heads).transpose(0, 2, 3, 1)

    q, k, v = (heads_first(t) for t in jnp.split(qkv, 3, axis=-1))
    q, k = _l2_normalise(q, -1), _l2_normalise(k, -1)
    logits = jnp.einsum("bhcn,bhdn->bhcd", q, k) * temperature[:, None, None]
    out = jnp.einsum("bhcd,bhdn->bhcn", jax.nn.softmax(logits, axis=-1), v)
    return out.transpose(0, 3, 1, 2).reshape(b, h, w, c)


class MDTA(nnx.Module):
    """Multi-Dconv-head transposed attention: attention between channels, not pixels.

    ``q, k, v`` come from a 1x1 conv ``C -> 3C`` followed by a 3x3 conv that mixes each pixel's
    neighbourhood: depthwise in Restormer (``qkv_mixing="depthwise"``), a full 3x3 conv
    ``3C -> 3C`` in the low-frequency base block (``"full"``). Per head, q and k of shape
    ``(C/heads, H*W)`` are L2-normalised along ``H*W``; the ``(C/heads, C/heads)`` attention is
    ``softmax(q k^T * t)`` with a learnable per-head temperature ``t`` (initialised to 1).

    Arguments:
        dim: channels ``C``; must be divisible by ``heads``.
        heads: number of heads.
        qkv_mixing: ``"depthwise"`` or ``"full"`` 3x3 conv after the 1x1 qkv projection.
        bias: whether the convolutions have a bias.
        rngs: parameter initialisation.

    Call: ``x: (B, H, W, C) -> (B, H, W, C)``.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        qkv_mixing: Literal["depthwise", "full"] = "depthwise",
        bias: bool = False,
        rngs: nnx.Rngs,
    ):
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        if qkv_mixing not in ("depthwise", "full"):
            raise ValueError(f"qkv_mixing must be 'depthwise' or 'full', got {qkv_mixing!r}")
        self.heads = heads
        self.qkv = PointwiseConv(dim, 3 * dim, use_bias=bias, rngs=rngs)
        self.qkv_mix = (
            GroupedConv(3 * dim, 3 * dim, (3, 3), groups=3 * dim, use_bias=bias, rngs=rngs)
            if qkv_mixing == "depthwise"
            else SameConv(3 * dim, 3 * dim, (3, 3), use_bias=bias, rngs=rngs)
        )
        self.temperature = nnx.Param(jnp.ones((heads,), jnp.float32))
        self.project_out = PointwiseConv(dim, dim, use_bias=bias, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        attend = functools.partial(transposed_attention, heads=self.heads)
        # checkpointed: the backward pass keeps the mixed q, k, v only, not their head-major
        # copies and normalised versions (docs/conventions.md#memory)
        out = schedule.checkpoint(attend)(self.qkv_mix(self.qkv(x)), self.temperature[...])
        return self.project_out(out)


def gated_gelu(x: jax.Array) -> jax.Array:
    """``GELU(a) * b`` for the two channel halves ``a, b`` of ``x: (..., 2n) -> (..., n)``; exact GELU."""
    a, b = jnp.split(x, 2, axis=-1)
    return jax.nn.gelu(a, approximate=False) * b


class GDFN(nnx.Module):
    """Gated-Dconv feed-forward: ``1x1 C -> 2*hidden``, grouped 3x3, ``GELU(a) * b``, ``1x1 -> C``.

    Arguments:
        dim: channels ``C``.
        hidden: width of each gate half (Restormer: ``2 * C``; the base block: ``C``).
        channels_per_group: input channels per group of the 3x3 conv; 1 is depthwise
            (Restormer), 2 gives ``hidden`` groups (CDDFuse's base-block MLP).
        bias: whether the convolutions have a bias.
        rngs: parameter initialisation.

    Call: ``x: (B, H, W, C) -> (B, H, W, C)``. GELU is the exact (erf) form, as in PyTorch.
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        *,
        channels_per_group: int = 1,
        bias: bool = False,
        rngs: nnx.Rngs,
    ):
        self.project_in = PointwiseConv(dim, 2 * hidden, use_bias=bias, rngs=rngs)
        self.mix = GroupedConv(
            2 * hidden,
            2 * hidden,
            (3, 3),
            groups=2 * hidden // channels_per_group,
            use_bias=bias,
            rngs=rngs,
        )
        self.project_out = PointwiseConv(hidden, dim, use_bias=bias, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        # checkpointed: the backward pass keeps the gate's input only, not GELU's intermediates
        return self.project_out(schedule.checkpoint(gated_gelu)(self.mix(self.project_in(x))))


class RestormerBlock(nnx.Module):
    """Pre-norm transformer block: ``x + MDTA(LN(x))`` then ``x + GDFN(LN(x))``.

    Arguments:
        dim: channels ``C``.
        heads: attention heads (``C`` divisible by it).
        expansion: GDFN hidden width as a multiple of ``C`` (Restormer: 2).
        bias: whether the convolutions have a bias.
        rngs: parameter initialisation.
        attention, ffn: prebuilt sub-modules replacing the default MDTA / GDFN (see
            :func:`base_block`); ``heads``, ``expansion`` and ``bias`` then do not apply to them.
        remat: recompute each of the two residual branches in the backward pass instead of
            storing its activations (``fuse4seg_jax.models.remat``).

    Call: ``x: (B, H, W, C) -> (B, H, W, C)``.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        expansion: float = 2.0,
        bias: bool = False,
        rngs: nnx.Rngs,
        attention: MDTA | None = None,
        ffn: GDFN | None = None,
        remat: bool = False,
    ):
        self.remat = remat
        self.norm1 = ChannelLayerNorm(dim, rngs=rngs)
        self.attention = MDTA(dim, heads, bias=bias, rngs=rngs) if attention is None else attention
        self.norm2 = ChannelLayerNorm(dim, rngs=rngs)
        self.ffn = GDFN(dim, int(dim * expansion), bias=bias, rngs=rngs) if ffn is None else ffn

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + apply_block(self, x, remat=self.remat, method="attend")
        return x + apply_block(self, x, remat=self.remat, method="feed_forward")

    def attend(self, x: jax.Array) -> jax.Array:
        """The attention branch, ``MDTA(LN(x))``."""
        return self.attention(self.norm1(x))

    def feed_forward(self, x: jax.Array) -> jax.Array:
        """The feed-forward branch, ``GDFN(LN(x))``."""
        return self.ffn(self.norm2(x))


def base_block(dim: int, heads: int, *, remat: bool = False, rngs: nnx.Rngs) -> RestormerBlock:
    """The low-frequency ("base") block: full 3x3 qkv mixing and an MLP of hidden ``dim``.

    Fuse4Seg calls it MSA + MLP; CDDFuse's ``BaseFeatureExtraction``. Its MLP's 3x3 conv has
    ``dim`` groups of 2 channels each.

    Arguments:
        dim: channels ``C`` (and the MLP's hidden width).
        heads: attention heads.
        remat: recompute the block's branches in the backward pass (see :class:`RestormerBlock`).
        rngs: parameter initialisation.

    Returns:
        a :class:`RestormerBlock`, ``(B, H, W, C) -> (B, H, W, C)``.
    """
    return RestormerBlock(
        dim,
        heads,
        rngs=rngs,
        attention=MDTA(dim, heads, qkv_mixing="full", rngs=rngs),
        ffn=GDFN(dim, dim, channels_per_group=2, rngs=rngs),
        remat=remat,
    )
