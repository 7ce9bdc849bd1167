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
from fuse4seg_jax.models.same_conv import SameConv


def attend(queries: jax.Array, keys: jax.Array, values: jax.Array, heads: int) -> tuple[jax.Array, jax.Array]:
    """Multi-head attention of one modality's tokens to each other modality's (eq. 8), summed.

    Arguments:
        queries: ``(B, T, C)``, ``W_q F_1`` (modality 1's projected tokens).
        keys: ``(N - 1, B, T, C)``, ``W_k F_j`` of the other modalities.
        values: ``(N - 1, B, T, C)``, ``W_v F_j``.
        heads: attention heads; ``C`` must be divisible by it (``d = C / heads`` per head).

    Returns:
        ``(attended, attention)``: ``attended (B, T, C) = sum_j A_j V_j`` with the heads
        concatenated, and ``attention (N - 1, B, heads, T, T)``, ``A_j = softmax(Q_h K_jh^T /
        sqrt(d))`` per head, rows summing to 1 (row ``t``: how query token ``t`` weighs the tokens
        of modality ``j + 1``).
    """

    def split(t: jax.Array) -> jax.Array:  # (..., T, C) -> (..., heads, T, d)
        return jnp.swapaxes(t.reshape(*t.shape[:-1], heads, -1), -2, -3)

    q, k, v = split(queries), split(keys), split(values)
    scale = 1.0 / math.sqrt(queries.shape[-1] // heads)
    attention = jax.nn.softmax(jnp.einsum("bhqd,jbhkd->jbhqk", q, k) * scale, axis=-1)
    attended = jnp.einsum("jbhqk,jbhkd->bhqd", attention, v)
    return jnp.swapaxes(attended, 1, 2).reshape(queries.shape), attention


class PatchCrossAttention(nnx.Module):
    """Eq. 8 on patch tokens: modality 1's tokens attend to each other modality's, back to pixels.

    Each modality's feature map is cut into non-overlapping ``patch x patch`` cells by a strided
    conv (``in_dim -> dim`` channels per token); ``W_q``, ``W_k``, ``W_v`` are bias-free linear
    maps; the attended tokens (:func:`attend`, summed over the other modalities) are projected to
    ``out_dim`` channels and resized bilinearly to the input's ``H x W``.

    Arguments:
        in_dim: channels of the feature maps; dim: channels of the tokens (divisible by
            ``heads``); out_dim: channels of the output; heads: attention heads; patch: cell side.
        rngs: parameter initialisation.

    Call: ``features (N, B, H, W, in_dim) -> (attended (B, H, W, out_dim), attention (N - 1, B,
    heads, T, T))`` with ``T = (H / patch) (W / patch)`` tokens in row-major order.
    """

    def __init__(self, in_dim: int, dim: int, out_dim: int, heads: int, patch: int, *, rngs: nnx.Rngs):
        if patch < 1:
            raise ConfigError(f"patch must be >= 1, got {patch}")
        self.heads, self.patch = heads, patch
        self.tokenise = nnx.Conv(in_dim, dim, (patch, patch), strides=patch, padding="VALID", rngs=rngs)
        self.query = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)
        self.key = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)
        self.value = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)
        self.project_out = nnx.Linear(dim, out_dim, use_bias=False, rngs=rngs)

    def check_grid(self, h: int, w: int) -> None:
        """Raise :class:`ConfigError` unless ``h x w`` images tile into whole cells."""
        if h % self.patch or w % self.patch:
            raise ConfigError(f"image size {h} x {w} is not a multiple of patch ({self.patch})")

    def __call__(self, features: jax.Array) -> tuple[jax.Array, jax.Array]:
        n, b, h, w, _ = features.shape
        self.check_grid(h, w)
        tokens = self.tokenise(features.reshape(n * b, h, w, -1))
        gh, gw, c = tokens.shape[1:]
        tokens = tokens.reshape(n, b, gh * gw, c)
        attended, attention = attend(
            self.query(tokens[0]), self.key(tokens[1:]), self.value(tokens[1:]), self.heads
        )
        attended = self.project_out(attended.reshape(b, gh, gw, c))
        out_dim = attended.shape[-1]
        return jax.image.resize(attended, (b, h, w, out_dim), method="bilinear"), attention


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
        self.num_modalities = num_modalities
        self.embed = SameConv(1, dim, (3, 3), use_bias=False, rngs=rngs)
        self.blocks = nnx.List([RestormerBlock(dim, heads, rngs=rngs) for _ in range(encoder_blocks)])
        self.mixer = PatchCrossAttention(dim, dim, dim, heads, patch, rngs=rngs)
        self.decoder = Decoder(2 * dim, dim, heads, decoder_blocks, rngs=rngs)

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
        features = self.embed(fold_modalities(x))
        for block in self.blocks:
            features = block(features)
        features = features.reshape(n, b, h, w, -1)
        attended, attention = self.mixer(features)
        image = self.decoder(jnp.concatenate([features[0], attended], -1))
        return {"fused": min_max_per_image(image), "attention": attention}
