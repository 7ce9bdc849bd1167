"""Per-modality discriminator for Fuse4Seg v1's adversarial pre-training, NHWC.

Fuse4Seg v1 ("Image-Level Fusion Based Multi-Modality Medical Image Segmentation") trains one
discriminator per modality to tell a source image from its reconstruction (and later from the
fused image) but does not give its layers. We use the usual fusion-GAN shape (FusionGAN,
DDcGAN): stride-2 3x3 convs doubling the width, LeakyReLU 0.2, then a global average and a linear
logit. In place of BatchNorm (whose running statistics are state the bi-level loop must not
mutate) every conv after the first is followed by a per-pixel channel LayerNorm, which is
stateless and per sample. Sizes: ``docs/conventions.md#architectures``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.models.frequency_decoupled import check_images
from fuse4seg_jax.models.registry import register
from fuse4seg_jax.models.restormer import ChannelLayerNorm


# the demo keeps the paper sizes: 64 x 64 images pass 4 stride-2 convs (to 4 x 4) cheaply
@register("discriminator", "fuse4seg_v1", paper={"width": 32, "depth": 4}, demo={})
class Discriminator(nnx.Module):
    """``(B, H, W, 1) -> (B,)`` real-vs-generated logits.

    Arguments:
        width: channels of the first conv; doubled at each further conv.
        depth: number of stride-2 convs; any ``H, W >= 1`` works (``SAME`` padding).
        rngs: parameter initialisation.
    """

    def __init__(self, *, width: int, depth: int, rngs: nnx.Rngs):
        if depth < 1:
            raise ConfigError(f"discriminator depth must be >= 1, got {depth}")
        widths = [1] + [width * 2**i for i in range(depth)]
        self.convs = nnx.List(
            [
                nnx.Conv(a, b, (3, 3), strides=2, rngs=rngs)
                for a, b in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        self.norms = nnx.List([ChannelLayerNorm(c, rngs=rngs) for c in widths[2:]])
        self.logit = nnx.Linear(widths[-1], 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        check_images(x, 1)
        x = jax.nn.leaky_relu(self.convs[0](x), negative_slope=0.2)
        for conv, norm in zip(self.convs[1:], self.norms, strict=True):
            x = jax.nn.leaky_relu(norm(conv(x)), negative_slope=0.2)
        return self.logit(jnp.mean(x, axis=(1, 2)))[:, 0]
