"""GAN losses on discriminator logits (Fuse4Seg v1 pre-training, one discriminator per modality).

``D(x) = sigmoid(logit(x))`` is the discriminator's probability that ``x`` is real. Everything is
written with ``softplus`` / ``log_sigmoid`` of the logits, so saturated logits (|logit| of
hundreds) give exact finite values and gradients, unlike ``log(sigmoid(.))``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """``-E[log D(real)] - E[log(1 - D(fake))]``: binary cross-entropy, real = 1, fake = 0.

    Arguments:
        real_logits: discriminator logits on real images, any shape.
        fake_logits: discriminator logits on generated (reconstructed / fused) images.

    Returns:
        scalar; ``2 log 2`` when both logits are 0.
    """
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def generator_loss_non_saturating(fake_logits: jax.Array) -> jax.Array:
    """``-E[log D(fake)]``, the non-saturating generator loss (Goodfellow et al. 2014, sec. 3).

    Its gradient is large exactly when the discriminator confidently rejects the fakes, which is
    when the minimax form below gives almost none.

    Arguments:
        fake_logits: discriminator logits on generated images, any shape.

    Returns:
        scalar in ``[0, inf)``.
    """
    return jnp.mean(jax.nn.softplus(-fake_logits))


def generator_loss_minimax(fake_logits: jax.Array) -> jax.Array:
    """``E[log(1 - D(fake))]``, the generator term as Fuse4Seg v1 writes it (eq. 10), minimised.

    Arguments:
        fake_logits: discriminator logits on generated images, any shape.

    Returns:
        scalar in ``(-inf, 0]``; ``-log 2`` when the logits are 0.
    """
    return jnp.mean(jax.nn.log_sigmoid(-fake_logits))


GENERATOR_LOSSES = {
    "non_saturating": generator_loss_non_saturating,
    "minimax": generator_loss_minimax,
}
"""The generator's loss by its ``generator_form`` name (config key ``loss.generator_form``).

Gradients are not stopped in these losses: training differentiates the generator's loss with
respect to the generator only and :func:`discriminator_loss` with respect to the discriminator only
(``fuse4seg_jax.train.objectives``)."""
