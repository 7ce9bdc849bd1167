"""The Fuse4Seg v1 fusion leader: a pre-trained decomposition encoder, then cross-attention (eq. 8).

Fuse4Seg v1 ("Image-Level Fusion Based Multi-Modality Medical Image Segmentation") pre-trains a
dual-stream encoder with a reconstruction decoder and two discriminators (eq. 9-12); its fusion
network merges the modalities' features frequency by frequency and joins them with a
cross-attention in which modality 1 asks and modality 2 answers (keys and values, eq. 8). The
paper gives no layers, so we build it from this package's pieces (our choice, written down here
and in ``docs/conventions.md#fuse4seg-v1``):

- encoder: the frequency-decoupled leader's shared encoder (3x3 embedding, Restormer blocks, a
  low-frequency base block and a high-frequency invertible coupling stack), per modality
  ``low_n, high_n: (B, H, W, dim)``; its embedding of modality ``n`` is ``e_n = concat(low_n,
  high_n)`` (``2 dim`` channels);
- decoder: the frequency-decoupled decoder on ``2 dim`` channels, one for both passes:
  :meth:`autoencode` decodes each ``e_n`` alone (pre-training, eq. 12's ``D(M_n)``), the fusion
  pass decodes the fused embedding, so the pre-trained decoder is the fusion network's decoder;
- fusion: same-frequency features summed over the modalities, ``sum_n e_n``, plus eq. 8's
  attended embedding of the other modalities as seen from modality 1,
  ``sum_{j >= 2} W_o A_j W_v e_j`` (:class:`PatchCrossAttention`: patch tokens, resized back to
  pixels), then decoded and min-max stretched to [0, 1] per image.

The attention maps ``A_j`` are returned for the report's gallery
(``fuse4seg_jax.train.attention_gallery``), and ``low`` / ``high`` for the decomposition loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fuse4seg_jax.models.cross_attention import PatchCrossAttention
from fuse4seg_jax.models.frequency_decoupled import (
    Decoder,
    Encoder,
    check_images,
    check_sizes,
    fold_modalities,
    min_max_per_image,
)
from fuse4seg_jax.models.registry import register


@register(
    "fusion",
    "fuse4seg_v1",
    paper={"dim": 64, "heads": 8, "encoder_blocks": 4, "decoder_blocks": 4, "inn_layers": 3, "patch": 8},
    demo={"dim": 16, "heads": 2, "encoder_blocks": 1, "decoder_blocks": 1, "inn_layers": 1},
)
class Fuse4SegV1Fusion(nnx.Module):
    """Decomposition encoder + cross-attention fusion + shared decoder (module docstring).

    Arguments:
        num_modalities: N >= 2; channel 0 of the input is the query modality (v1's M1).
        dim: channels of each frequency stream (the embedding has ``2 dim``); even and divisible
            by ``heads``.
        heads: attention heads of the Restormer blocks and of the cross-attention.
        encoder_blocks, decoder_blocks: Restormer blocks in the encoder / decoder.
        inn_layers: coupling layers of the encoder's high-frequency stream.
        patch: side of the cross-attention's token cells; image sides must be multiples of it.
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
        inn_layers: int,
        patch: int,
        rngs: nnx.Rngs,
    ):
        check_sizes(num_modalities, dim, heads)
        self.num_modalities = num_modalities
        self.encoder = Encoder(dim, heads, encoder_blocks, inn_layers, rngs=rngs)
        self.mixer = PatchCrossAttention(2 * dim, dim, 2 * dim, heads, patch, rngs=rngs)
        self.decoder = Decoder(2 * dim, dim, heads, decoder_blocks, rngs=rngs)

    def _encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(B, H, W, N) -> (low, high)``, each ``(N, B, H, W, dim)``."""
        check_images(x, self.num_modalities, min_size=2)
        b, h, w, n = x.shape
        low, high = self.encoder(fold_modalities(x))
        return low.reshape(n, b, h, w, -1), high.reshape(n, b, h, w, -1)

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        """Fuse the modalities of ``x``.

        Arguments:
            x: ``(B, H, W, N)`` in [0, 1]; ``H, W`` multiples of ``patch``.

        Returns:
            ``fused: (B, H, W, 1)`` stretched to [0, 1] per image; ``low``, ``high``:
            ``(N, B, H, W, dim)``; ``attention: (N - 1, B, heads, T, T)``, ``T = (H / patch)
            (W / patch)`` tokens in row-major order, row ``t`` of ``attention[j - 1]`` being how
            modality 1's cell ``t`` weighs the cells of modality ``j + 1`` (rows sum to 1).
        """
        low, high = self._encode(x)
        embedding = jnp.concatenate([low, high], axis=-1)  # (N, B, H, W, 2 dim)
        attended, attention = self.mixer(embedding)
        image = self.decoder(jnp.sum(embedding, axis=0) + attended)
        return {"fused": min_max_per_image(image), "low": low, "high": high, "attention": attention}

    def autoencode(self, x: jax.Array) -> dict[str, jax.Array]:
        """Pre-training pass: each modality's embedding decoded alone (eq. 12's ``D(M_n)``).

        Arguments:
            x: ``(B, H, W, N)`` in [0, 1].

        Returns:
            ``images: (N, B, H, W, 1)``, the decoder's sigmoid outputs (not stretched, so they
            can match the sources), and ``low, high: (N, B, H, W, dim)``, modality-major.
        """
        low, high = self._encode(x)
        n, b, h, w, _ = low.shape
        embedding = jnp.concatenate([low, high], axis=-1).reshape(n * b, h, w, -1)
        return {"images": self.decoder(embedding).reshape(n, b, h, w, 1), "low": low, "high": high}
