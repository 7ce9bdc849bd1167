"""GAN losses on discriminator logits (Fuse4Seg v1 pre-training, one discriminator per modality).

``D(x) = sigmoid(logit(x))`` is the discriminator's probability that ``x`` is real. Everything is
written with ``softplus`` / ``log_sigmoid`` of the logits, so saturated logits (|logit| of
hundreds) give exact finite values and gradients, unlike ``log(sigmoid(.))``.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp


class AdversarialLosses(NamedTuple):
    """The two players' losses; each is minimised by its own player's parameters."""

    generator: jax.Array
    discriminator: jax.Array


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


# The generator's loss by its ``generator_form`` name.
GENERATOR_LOSSES = {
    "non_saturating": generator_loss_non_saturating,
    "minimax": generator_loss_minimax,
}


def adversarial_losses(
    real_logits: jax.Array,
    fake_logits: jax.Array,
    generator_form: Literal["non_saturating", "minimax"] = "non_saturating",
) -> AdversarialLosses:
    """Both players' losses from one pair of discriminator outputs.

    Gradients are not stopped here: differentiate ``generator`` with respect to the generator's
    parameters only and ``discriminator`` with respect to the discriminator's only (or pass
    ``jax.lax.stop_gradient`` of the fakes when computing the discriminator's logits).

    Arguments:
        real_logits: discriminator logits on real images, any shape.
        fake_logits: discriminator logits on generated images, any shape.
        generator_form: ``"non_saturating"`` (:func:`generator_loss_non_saturating`) or
            ``"minimax"`` (:func:`generator_loss_minimax`, the paper's form).

    Returns:
        :class:`AdversarialLosses` ``(generator, discriminator)`` of scalars.
    """
    if generator_form not in GENERATOR_LOSSES:
        raise ValueError(f"generator_form must be one of {sorted(GENERATOR_LOSSES)}, got {generator_form!r}")
    return AdversarialLosses(
        generator=GENERATOR_LOSSES[generator_form](fake_logits),
        discriminator=discriminator_loss(real_logits, fake_logits),
    )
