"""CAF's simple fusion network: three dense blocks, no specific design, NHWC.

From CAF ("Towards a Compact, Automatic, and Flexible Framework for Multi-modality Image Fusion");
sizes in ``docs/conventions.md#architectures``.

The paper gives only "three dense blocks"; we use a DenseFuse-style shape: a 3x3 stem over the
stacked modalities, then each dense block concatenates the outputs of its 3x3 conv + ReLU layers
with its input and a 1x1 transition brings the width back, then a 3x3 head and a sigmoid.
It is the default inner network of the loss-weight search: small, fast, any spatial size.
Its demo preset (width and growth 8, two layers per block) is a quarter of the paper's compute.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.models.frequency_decoupled import check_images
from fuse4seg_jax.models.registry import register
from fuse4seg_jax.models.same_conv import SameConv


class DenseBlock(nnx.Module):
    """``layers`` 3x3 conv + ReLU layers, each seeing the concatenation of all before it.

    Arguments:
        channels: input channels ``c``.
        growth: channels each layer adds.
        layers: number of conv layers.
        rngs: parameter initialisation.

    Call: ``x: (B, H, W, c) -> (B, H, W, c + layers * growth)``.
    """

    def __init__(self, channels: int, growth: int, layers: int, *, rngs: nnx.Rngs):
        self.convs = nnx.List(
            [SameConv(channels + i * growth, growth, (3, 3), rngs=rngs) for i in range(layers)]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = jnp.concatenate([x, jax.nn.relu(conv(x))], axis=-1)
        return x


@register(
    "fusion",
    "caf_dense",
    paper={"width": 16, "growth": 16, "dense_layers": 3, "blocks": 3},
    demo={"width": 8, "growth": 8, "dense_layers": 2},
)
class CAFDenseFusion(nnx.Module):
    """Stem, ``blocks`` dense blocks with 1x1 transitions, 3x3 head, sigmoid.

    Arguments:
        num_modalities: N >= 2 input channels.
        width: channels between blocks.
        growth: channels added per dense layer.
        dense_layers: conv layers per dense block.
        blocks: dense blocks.
        rngs: parameter initialisation.

    Call: ``x: (B, H, W, N) -> {"fused": (B, H, W, 1)}`` in (0, 1) (sigmoid, not min-max
    stretched); any ``H, W >= 1``.
    """

    def __init__(
        self,
        num_modalities: int,
        *,
        width: int,
        growth: int,
        dense_layers: int,
        blocks: int,
        rngs: nnx.Rngs,
    ):
        if num_modalities < 2:
            raise ConfigError(f"num_modalities must be >= 2 to fuse, got {num_modalities}")
        self.num_modalities = num_modalities
        self.stem = SameConv(num_modalities, width, (3, 3), rngs=rngs)
        self.blocks = nnx.List([DenseBlock(width, growth, dense_layers, rngs=rngs) for _ in range(blocks)])
        block_out = width + dense_layers * growth
        self.transitions = nnx.List([SameConv(block_out, width, (1, 1), rngs=rngs) for _ in range(blocks)])
        self.head = SameConv(width, 1, (3, 3), rngs=rngs)

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        check_images(x, self.num_modalities)
        x = jax.nn.relu(self.stem(x))
        for block, transition in zip(self.blocks, self.transitions, strict=True):
            x = jax.nn.relu(transition(block(x)))
        return {"fused": jax.nn.sigmoid(self.head(x))}
