"""SMFNet-style fusion leader, NHWC.

After SMFNet ("A Semantic-Aware and Multi-Guided Network for Infrared-Visible Image Fusion"); sizes
in ``docs/conventions.md#architectures``.

Pipeline, with every module shared by all N modalities (the paper has N = 2, infrared and visible):

1. Shallow encoder per modality: 3x3 conv ``1 -> dim`` with a bias (so that exact-zero background
   does not embed to the zero vector: ``docs/conventions.md#smfnet``), then transformer blocks made
   of MDTA attention (``restormer.MDTA``) and a LeFF feed-forward (:class:`LeFF`).
2. Three branches on each modality's shallow features:
   - base ("low"): a residual transformer group, ``conv3x3(blocks(F)) + F`` (eq. 9-10);
   - detail ("high"): the CAI block, a cross attention (:class:`CrossChannelAttention`, eq. 1-2)
     followed by invertible affine couplings (``inn.CouplingStack``);
   - interaction: the Graph Reasoning module (``graph_reasoning.GraphReasoning``).
3. Fusion: the modalities' base features are summed and refined by one transformer block, their
   detail features summed and refined by one coupling layer; the interaction features are summed.
4. Decoder (three-branch input): ``concat(base, detail, interaction)`` -> 1x1 conv to ``dim`` ->
   transformer blocks -> 3x3 conv, LeakyReLU 0.01, 3x3 conv to 1 channel, sigmoid; the fused
   image is then min-max stretched per image, as Fuse4Seg does.

The invertible layers (CAI's couplings and the detail fusion layer) are CDDFuse's affine coupling,
our reading of the garbled eq. 5-8 (eq. 7-8 as its inverse; ``docs/conventions.md#smfnet``): channel
halves, updated one after the other, so that each layer inverts exactly.

Generalising the paper's two inputs to N: in the cross attention, modality ``i``'s query is the
mean of the other modalities' queries (for N = 2, exactly the paper's "query of the other
modality"); the fusion layers sum over all N; the graph connects every pair of modalities.

The paper gives no layer sizes. Defaults follow CDDFuse where SMFNet builds on it (dim 64,
8 heads, 3 coupling layers in the detail branch, 4 decoder blocks) and are our choice elsewhere:
2 shallow blocks, 2 blocks in the base group, LeFF expansion 2, graph factors (1, 2, 4), 2 steps.
The demo preset (dim 16, 2 heads, one block or layer where the paper preset has several, graph
factors (1, 2) and one message-passing step) trains on 64 x 64 slices on 2 CPU cores.
Any ``H, W >= 2``, odd or even (the couplings reflection-pad by 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.models.convnext_unet import fan_in_bias
from fuse4seg_jax.models.frequency_decoupled import (
    check_images,
    check_sizes,
    fold_modalities,
    min_max_per_image,
)
from fuse4seg_jax.models.graph_reasoning import GraphReasoning
from fuse4seg_jax.models.grouped_conv import GroupedConv
from fuse4seg_jax.models.inn import CouplingStack
from fuse4seg_jax.models.pointwise import PointwiseConv, PointwiseLinear
from fuse4seg_jax.models.registry import register
from fuse4seg_jax.models.remat import apply_block
from fuse4seg_jax.models.restormer import MDTA, RestormerBlock, _l2_normalise
from fuse4seg_jax.models.same_conv import SameConv


class LeFF(nnx.Module):
    """Locally-enhanced feed-forward (Uformer): 1x1 up, GELU, depthwise 3x3, GELU, 1x1 down.

    Arguments:
        dim: channels ``C``.
        hidden: hidden width.
        rngs: parameter initialisation.

    Call: ``x: (B, H, W, C) -> (B, H, W, C)``. GELU is the exact (erf) form.
    """

    def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.project_in = PointwiseLinear(dim, hidden, rngs=rngs)
        self.depthwise = GroupedConv(hidden, hidden, (3, 3), groups=hidden, rngs=rngs)
        self.project_out = PointwiseLinear(hidden, dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        # rematerialised: the backward pass keeps the hidden input only, not GELU's intermediates
        return self.project_out(apply_block(self, self.project_in(x), remat=True, method="local_mix"))

    def local_mix(self, x: jax.Array) -> jax.Array:
        """GELU, depthwise 3x3, GELU on the hidden ``(B, H, W, hidden)`` map."""
        return jax.nn.gelu(self.depthwise(jax.nn.gelu(x, approximate=False)), approximate=False)


def transformer_block(dim: int, heads: int, expansion: float, *, rngs: nnx.Rngs) -> RestormerBlock:
    """Pre-norm MDTA + LeFF block, ``(B, H, W, C) -> (B, H, W, C)``."""
    return RestormerBlock(dim, heads, rngs=rngs, ffn=LeFF(dim, int(dim * expansion), rngs=rngs))


def _run(blocks: nnx.List, x: jax.Array) -> jax.Array:
    for block in blocks:
        x = block(x)
    return x


class ResidualTransformerGroup(nnx.Module):
    """SMFNet's base branch: ``conv3x3(blocks(F)) + F`` (eq. 9-10)."""

    def __init__(self, dim: int, heads: int, blocks: int, expansion: float, *, rngs: nnx.Rngs):
        self.blocks = nnx.List([transformer_block(dim, heads, expansion, rngs=rngs) for _ in range(blocks)])
        self.conv = SameConv(dim, dim, (3, 3), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, H, W, C) -> (B, H, W, C)``."""
        return self.conv(_run(self.blocks, x)) + x


class CrossChannelAttention(nnx.Module):
    """The cross attention of SMFNet's CAI block, in MDTA's channel-to-channel form.

    Each modality's q, k, v come from one shared MDTA projection (1x1 conv, depthwise 3x3).
    Modality ``i`` attends with the mean query of the *other* modalities over its own keys and
    values: ``softmax(q_others k_i^T * t) v_i`` per head, q and k L2-normalised along the pixels,
    ``t`` a learnable per-head temperature (eq. 1-4). Output: 1x1 projection plus a residual.

    Call: ``x: (N, B, H, W, C) -> (N, B, H, W, C)``, N >= 2.
    """

    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
        self.heads = heads
        self.projection = MDTA(dim, heads, bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        n, b, h, w, c = x.shape
        mdta = self.projection
        q, k, v = jnp.split(mdta.qkv_mix(mdta.qkv(x.reshape(n * b, h, w, c))), 3, axis=-1)

        def heads_first(t: jax.Array) -> jax.Array:  # (N*B, H, W, C) -> (N, B, heads, C/heads, HW)
            return t.reshape(n, b, h * w, self.heads, c // self.heads).transpose(0, 1, 3, 4, 2)

        q, k, v = heads_first(q), heads_first(k), heads_first(v)
        q_others = (jnp.sum(q, axis=0, keepdims=True) - q) / (n - 1)
        q_others, k = _l2_normalise(q_others, -1), _l2_normalise(k, -1)
        logits = jnp.einsum("nbhcp,nbhdp->nbhcd", q_others, k)
        logits = logits * mdta.temperature[...][:, None, None]
        out = jnp.einsum("nbhcd,nbhdp->nbhcp", jax.nn.softmax(logits, axis=-1), v)
        out = out.transpose(0, 1, 4, 2, 3).reshape(n * b, h, w, c)
        return x + mdta.project_out(out).reshape(n, b, h, w, c)


class CAI(nnx.Module):
    """Cross Attention + Invertible block: cross attention, then affine couplings per modality.

    Call: ``x: (N, B, H, W, C) -> (N, B, H, W, C)``; ``H, W >= 2``.
    """

    def __init__(self, dim: int, heads: int, inn_layers: int, *, rngs: nnx.Rngs):
        self.attention = CrossChannelAttention(dim, heads, rngs=rngs)
        self.couplings = CouplingStack(dim, inn_layers, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        attended = self.attention(x)
        return self.couplings(attended.reshape(-1, *x.shape[2:])).reshape(x.shape)


class Decoder(nnx.Module):
    """``(B, H, W, 3 dim)`` -> 1x1 -> transformer blocks -> 3x3, LeakyReLU, 3x3 -> sigmoid.

    Call: ``(B, H, W, 3 dim) -> (B, H, W, 1)`` in (0, 1).
    """

    def __init__(self, dim: int, heads: int, blocks: int, expansion: float, *, rngs: nnx.Rngs):
        self.reduce = PointwiseConv(3 * dim, dim, use_bias=False, rngs=rngs)
        self.blocks = nnx.List([transformer_block(dim, heads, expansion, rngs=rngs) for _ in range(blocks)])
        self.head = SameConv(dim, dim // 2, (3, 3), use_bias=False, rngs=rngs)
        self.out = SameConv(dim // 2, 1, (3, 3), use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = _run(self.blocks, self.reduce(x))
        return jax.nn.sigmoid(self.out(jax.nn.leaky_relu(self.head(x), negative_slope=0.01)))


@register(
    "fusion",
    "smfnet",
    paper={
        "dim": 64,
        "heads": 8,
        "shallow_blocks": 2,
        "base_blocks": 2,
        "decoder_blocks": 4,
        "inn_layers": 3,
        "graph_factors": (1, 2, 4),
        "graph_steps": 2,
        "expansion": 2.0,
    },
    demo={
        "dim": 16,
        "heads": 2,
        "shallow_blocks": 1,
        "base_blocks": 1,
        "decoder_blocks": 1,
        "inn_layers": 1,
        "graph_factors": (1, 2),
        "graph_steps": 1,
    },
)
class SMFNet(nnx.Module):
    """SMFNet-style fusion of N single-channel modalities; see the module docstring.

    Registered as ``fusion/smfnet``; the class itself is the registry constructor.

    Arguments:
        num_modalities: N >= 2, the channels of the input.
        dim: feature channels; even and divisible by ``heads``.
        heads: attention heads.
        shallow_blocks: MDTA + LeFF blocks of the shallow encoder.
        base_blocks: blocks of the base branch's residual group.
        decoder_blocks: blocks of the decoder.
        inn_layers: coupling layers in the CAI block; the detail fusion layer has 1.
        graph_factors: pooling factors of the graph's node scales.
        graph_steps: message-passing rounds of the graph.
        expansion: LeFF hidden width as a multiple of ``dim``.
        rngs: parameter initialisation.

    Raises:
        ConfigError: N < 2, ``dim`` odd or not divisible by ``heads``, or bad graph factors.
    """

    def __init__(
        self,
        num_modalities: int,
        *,
        dim: int,
        heads: int,
        shallow_blocks: int,
        base_blocks: int,
        decoder_blocks: int,
        inn_layers: int,
        graph_factors: Sequence[int],
        graph_steps: int,
        expansion: float,
        rngs: nnx.Rngs,
    ):
        check_sizes(num_modalities, dim, heads)
        factors = tuple(graph_factors)
        if len(factors) < 2 or len(set(factors)) != len(factors) or min(factors) < 1:
            raise ConfigError(f"graph_factors must be at least two distinct integers >= 1, got {factors}")
        self.num_modalities = num_modalities
        self.embed = SameConv(1, dim, (3, 3), bias_init=fan_in_bias(9), rngs=rngs)
        self.shallow = nnx.List(
            [transformer_block(dim, heads, expansion, rngs=rngs) for _ in range(shallow_blocks)]
        )
        self.base = ResidualTransformerGroup(dim, heads, base_blocks, expansion, rngs=rngs)
        self.detail = CAI(dim, heads, inn_layers, rngs=rngs)
        self.graph = GraphReasoning(dim, factors, graph_steps, rngs=rngs)
        self.fuse_base = transformer_block(dim, heads, expansion, rngs=rngs)
        self.fuse_detail = CouplingStack(dim, 1, rngs=rngs)
        self.decoder = Decoder(dim, heads, decoder_blocks, expansion, rngs=rngs)

    def encode(self, x: jax.Array) -> dict[str, jax.Array]:
        """The three branches' features of every modality.

        Arguments:
            x: ``(B, H, W, N)``, one channel per modality, values in [0, 1]; ``H, W >= 2``.

        Returns:
            ``low`` (base), ``high`` (detail) and ``interaction`` (graph) features, each
            ``(N, B, H, W, dim)``, modality-major.
        """
        check_images(x, self.num_modalities, min_size=2)
        b, h, w, n = x.shape
        shallow = _run(self.shallow, self.embed(fold_modalities(x)))
        low = self.base(shallow).reshape(n, b, h, w, -1)
        shallow = shallow.reshape(n, b, h, w, -1)
        return {"low": low, "high": self.detail(shallow), "interaction": self.graph(shallow)}

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        """Fuse the modalities of ``x`` (stage II).

        Arguments:
            x: ``(B, H, W, N)``, one channel per modality, values in [0, 1]; ``H, W >= 2``.

        Returns:
            ``fused: (B, H, W, 1)`` stretched to [0, 1] per image (min 0, max 1), plus the
            features of :meth:`encode` (``low``, ``high``, ``interaction``: ``(N, B, H, W, dim)``)
            for the decomposition loss with interaction term (paper eq. 27).
        """
        features = self.encode(x)
        fused = jnp.concatenate(
            [
                self.fuse_base(jnp.sum(features["low"], axis=0)),
                self.fuse_detail(jnp.sum(features["high"], axis=0)),
                jnp.sum(features["interaction"], axis=0),
            ],
            axis=-1,
        )
        return {"fused": min_max_per_image(self.decoder(fused)), **features}

    def autoencode(self, x: jax.Array) -> dict[str, jax.Array]:
        """Stage I (pre-training): decode each modality from its own three features (fusion layers unused).

        Arguments:
            x: ``(B, H, W, N)`` in [0, 1]; the cross attention and the graph still see all N.

        Returns:
            ``images: (N, B, H, W, 1)``, the sigmoid outputs (not stretched, so they can match
            the sources), plus ``low``, ``high``, ``interaction`` as in :meth:`encode`.
        """
        features = self.encode(x)
        n, b, h, w, _ = features["low"].shape
        stacked = jnp.concatenate([features[k] for k in ("low", "high", "interaction")], axis=-1)
        images = self.decoder(stacked.reshape(n * b, h, w, -1)).reshape(n, b, h, w, 1)
        return {"images": images, **features}
