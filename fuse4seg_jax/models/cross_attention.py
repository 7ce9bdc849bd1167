"""Cross-attention fusion (Fuse4Seg v1 eq. 8), NHWC.

A shared encoder (3x3 embedding + Restormer blocks) embeds every modality. Modality 1's
embedding gives the queries, each other modality ``j``'s the keys and values:

    A_j = softmax((W_q F_1)(W_k F_j)^T / sqrt(d)),    out_j = A_j (W_v F_j)

and the attended features ``sum_j out_j`` (one cross-attention per other modality, shared
weights, summed; for N = 2 exactly eq. 8) are decoded together with ``F_1``.

Memory: attention over all ``H * W`` pixels would need ``(H W)^2`` entries per head (2.5 G for
224 x 224), so queries, keys and values are tokens of non-overlapping ``patch x patch`` cells
(a strided ``patch x patch`` conv); the attention has ``(H W / patch^2)^2`` entries per head and
its output is resized back to ``H x W`` bilinearly. ``H`` and ``W`` must be multiples of ``patch``.

Fuse4Seg v1 gives no sizes; ours are in ``docs/conventions.md#architectures``. The demo preset
(dim 16, 2 heads, one block each side, 8 x 8 patches: 64 tokens on a 64 x 64 slice) runs on 2 CPU
cores.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.models.frequency_decoupled import (
    Decoder,
    check_images,
    check_sizes,
    fold_modalities,
    min_max_per_image,
)
from fuse4seg_jax.models.registry import register
from fuse4seg_jax.models.restormer import RestormerBlock


@register(
    "fusion",
    "cross_attention",
    paper={"dim": 64, "heads": 8, "encoder_blocks": 2, "decoder_blocks": 2, "patch": 8},
    demo={"dim": 16, "heads": 2, "encoder_blocks": 1, "decoder_blocks": 1},
)
class CrossAttentionFusion(nnx.Module):
    """Fuse N modalities by attending from modality 1's tokens to each other modality's.

    Arguments:
        num_modalities: N >= 2; channel 0 of the input is the query modality.
        dim: feature channels; divisible by ``heads``.
        heads: attention heads; each has ``d = dim / heads`` channels.
        encoder_blocks, decoder_blocks: Restormer blocks in the shared encoder / decoder.
        patch: side of the token cells; input sides must be multiples of it.
        rngs: parameter initialisation.
    """

    def __init__(
        self,
        num_modalities: int,
        *,
        dim: int,
        heads: int,
        encoder_blocks: int,
        decoder_blocks: int,
        patch: int,
        rngs: nnx.Rngs,
    ):
        check_sizes(num_modalities, dim, heads)
        if patch < 1:
            raise ConfigError(f"patch must be >= 1, got {patch}")
        self.num_modalities, self.heads, self.patch = num_modalities, heads, patch
        self.embed = nnx.Conv(1, dim, (3, 3), use_bias=False, rngs=rngs)
        self.blocks = nnx.List([RestormerBlock(dim, heads, rngs=rngs) for _ in range(encoder_blocks)])
        self.tokenise = nnx.Conv(dim, dim, (patch, patch), strides=patch, padding="VALID", rngs=rngs)
        self.query = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)
        self.key = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)
        self.value = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)
        self.project_out = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)
        self.decoder = Decoder(2 * dim, dim, heads, decoder_blocks, rngs=rngs)

    def _split_heads(self, t: jax.Array) -> jax.Array:  # (..., T, C) -> (..., heads, T, C/heads)
        return jnp.swapaxes(t.reshape(*t.shape[:-1], self.heads, -1), -2, -3)

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        """Fuse the modalities of ``x``.

        Arguments:
            x: ``(B, H, W, N)`` in [0, 1]; ``H, W`` multiples of ``patch``.

        Returns:
            ``fused: (B, H, W, 1)`` stretched to [0, 1] per image; ``attention:
            (N - 1, B, heads, T, T)`` with ``T = (H / patch) * (W / patch)`` tokens in row-major
            order: row ``t`` of ``attention[j - 1]`` is how query cell ``t`` of modality 1 weighs
            the cells of modality ``j + 1`` (rows sum to 1).
        """
        check_images(x, self.num_modalities)
        b, h, w, n = x.shape
        if h % self.patch or w % self.patch:
            raise ConfigError(f"image size {h} x {w} is not a multiple of patch ({self.patch})")
        features = self.embed(fold_modalities(x))
        for block in self.blocks:
            features = block(features)
        tokens = self.tokenise(features)  # (N * B, h', w', C)
        gh, gw, c = tokens.shape[1:]
        tokens = tokens.reshape(n, b, gh * gw, c)
        q = self._split_heads(self.query(tokens[0]))  # (B, heads, T, d)
        k = self._split_heads(self.key(tokens[1:]))  # (N - 1, B, heads, T, d)
        v = self._split_heads(self.value(tokens[1:]))
        scale = 1.0 / math.sqrt(c // self.heads)
        attention = jax.nn.softmax(jnp.einsum("bhqd,jbhkd->jbhqk", q, k) * scale, axis=-1)
        attended = jnp.einsum("jbhqk,jbhkd->bhqd", attention, v)
        attended = self.project_out(jnp.swapaxes(attended, 1, 2).reshape(b, gh, gw, c))
        attended = jax.image.resize(attended, (b, h, w, c), method="bilinear")
        image = self.decoder(jnp.concatenate([features.reshape(n, b, h, w, c)[0], attended], -1))
        return {"fused": min_max_per_image(image), "attention": attention}
