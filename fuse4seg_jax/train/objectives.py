"""The Fuse4Seg objectives as pure functions of (parameters, batch).

A batch is a dict of arrays: ``image (B, H, W, N)`` float32 in [0, 1] and ``label (B, H, W)``
int32 (internal classes 0..3). The leader is the fusion network, the follower the segmentation
network; :class:`Objectives` turns them into the bi-level problem

    lower (follower):  L_seg(follower(fuse(x)), y)                      on D_tr
    upper (leader):    L_seg on D_val + sum_t w_t L_t   (alpha L_decomp + beta L_grad + gamma L_recon)

(Fuse4Seg eq. 3 and sec. 3.5; ``docs/conventions.md#losses``), plus the single-level
objectives of the other stages (autoencoder pre-training, fusion-only, follower-only).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from fuse4seg_jax import losses
from fuse4seg_jax.models import PureModel
from fuse4seg_jax.train.smfnet_objectives import SMFNetStageOne

Batch = dict[str, jax.Array]
FOLLOWER_INPUTS = ("average", "fused", "stacked")
PRETRAIN_OBJECTIVES = ("cddfuse", "fuse4seg_v1", "smfnet")


def cast_floats(tree: Any, dtype: jnp.dtype) -> Any:
    """Cast every floating-point leaf of ``tree`` to ``dtype`` (integer leaves are left alone)."""
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def modality_major(images: jax.Array) -> jax.Array:
    """``(B, H, W, N) -> (N, B, H, W, 1)``: one single-channel batch per modality."""
    return jnp.moveaxis(images, -1, 0)[..., None]


def microbatched(loss_fn, num_micro: int):
    """Gradient accumulation as a loss transform: the mean of ``loss_fn`` over micro-batches.

    ``loss_fn(p1, p2, batch) -> (loss, aux)`` is evaluated on ``num_micro`` equal slices of the
    batch's leading axis inside ``lax.map`` with a rematerialised body, so reverse mode (and the
    solvers' Hessian-vector products) keep only one micro-batch's activations alive. Every solver
    sees the transformed loss as its objective. For losses that are means over samples or pixels
    (CE, the gradient and reconstruction terms) the result equals the whole-batch loss; soft Dice
    with sums over the batch, and the decomposition loss (a ratio of batch-mean correlations),
    become means of per-micro-batch values, different estimators of the same quantities.
    """
    if num_micro == 1:
        return loss_fn

    def split(x):
        if x.shape[0] % num_micro:
            raise ValueError(f"batch of {x.shape[0]} does not split into {num_micro} micro-batches")
        return x.reshape(num_micro, x.shape[0] // num_micro, *x.shape[1:])

    def mean_loss(p1, p2, batch):
        body = jax.checkpoint(lambda micro: loss_fn(p1, p2, micro))
        values, aux = jax.lax.map(body, jax.tree.map(split, batch))
        return jnp.mean(values), jax.tree.map(lambda a: jnp.mean(a, axis=0), aux)

    return mean_loss


@dataclasses.dataclass(frozen=True)
class Objectives:
    """Loss functions of every stage, closed over the two models and the loss weights.

    Hashable (frozen, static fields only), so its bound methods can define a ``bilevel.Problem``
    that is a static argument of ``jax.jit``.

    Attributes:
        fusion: the leader (``fused`` in [0, 1], ``low``/``high`` features ``(N, B, H, W, C)``).
        segmentation: the follower (logits ``(B, H, W, classes)``).
        fusion_weights: ``((term, weight), ...)`` of the upper level's fusion terms
            (``fuse4seg_jax.losses.fusion_terms``; the paper's alpha, beta, gamma weigh
            ``decomp``, ``grad``, ``recon``); by default every registered term at its default weight.
        class_weights: Dice class weights (background, NCR, ED, ET).
        follower_input: what the follower sees in the single-level follower stage.
        compute_dtype: ``float32`` or ``bfloat16``; parameters stay float32, losses are float32.
            ``float64`` (with JAX's x64 mode, for solver studies) computes and returns float64.
        discriminator: the per-modality discriminator of adversarial pre-training (or None).
        adversarial: weight of the generator term in adversarial pre-training (v1 eq. 9's lambda).
        generator_form: ``minimax`` (v1 eq. 10) or ``non_saturating``.
        pretrain_decomp: weight of ``L_decomp`` in the autoencoder pre-training (CDDFuse phase
            I: 2; 0 for the autoencoder without it of Fuse4Seg's Table 3 baseline).
        pretrain_objective: the pre-training loss, one of :data:`PRETRAIN_OBJECTIVES`:
            ``cddfuse`` (CDDFuse phase I, weighted by ``pretrain_decomp``), ``fuse4seg_v1`` (v1
            eq. 9 with eq. 12's content loss, weighted by ``pretrain_sigma``) or ``smfnet``
            (SMFNet's stage I, ``smfnet_stage_one``).
        pretrain_sigma: v1 eq. 9's sigma: ``sigma L_correlation + (1 - sigma) L_content``.
        fusion_adversarial: weight of v1's adversarial term in the fusion stages (the upper
            objective and the fusion-only stage), the pre-trained discriminators judging the
            fused image (:meth:`fused_adversarial`); 0: off.
        caf_weights: weights of CAF's loss space (``fuse4seg_jax.search.weights``); when given,
            the fusion terms gain ``caf``, ``losses.caf_weighted_loss`` on the fused image, added
            with weight 1 (CAF's hierarchical training with a searched or preset loss).
        smfnet_stage_one: SMFNet's stage-I loss (``fuse4seg_jax.train.smfnet_objectives``), used
            when ``pretrain_objective`` is ``smfnet``; None otherwise.
    """

    fusion: PureModel
    segmentation: PureModel
    fusion_weights: tuple[tuple[str, float], ...] = dataclasses.field(
        default_factory=lambda: tuple(losses.fusion_term_weights().items())
    )
    class_weights: tuple[float, ...] = (0.1, 1.0, 1.0, 1.0)
    follower_input: str = "average"
    compute_dtype: str = "float32"
    discriminator: PureModel | None = None
    adversarial: float = 0.0
    generator_form: str = "minimax"
    caf_weights: tuple[float, ...] = ()
    pretrain_decomp: float = 2.0
    smfnet_stage_one: SMFNetStageOne | None = None
    pretrain_objective: str = "cddfuse"
    pretrain_sigma: float = 0.5
    fusion_adversarial: float = 0.0

    @property
    def loss_dtype(self) -> jnp.dtype:
        """What the losses and the models' outputs are computed in: float32, or float64."""
        return jnp.promote_types(jnp.float32, jnp.dtype(self.compute_dtype))

    def fuse(self, leader: Any, images: jax.Array) -> dict[str, jax.Array]:
        """Run the leader; returns its output dict with arrays in ``loss_dtype``."""
        dtype = jnp.dtype(self.compute_dtype)
        out = self.fusion.apply(cast_floats(leader, dtype), images.astype(dtype))
        return cast_floats(out, self.loss_dtype)

    def segment(self, follower: Any, x: jax.Array) -> jax.Array:
        """Follower logits ``(B, H, W, classes)`` in ``loss_dtype``."""
        dtype = jnp.dtype(self.compute_dtype)
        logits = self.segmentation.apply(cast_floats(follower, dtype), x.astype(dtype))
        return logits.astype(self.loss_dtype)

    def follower_view(self, kind: str, leader: Any, images: jax.Array) -> jax.Array:
        """The follower's input: mean of the modalities, the fused image, or the stack."""
        if kind == "average":
            return jnp.mean(images, axis=-1, keepdims=True)
        if kind == "stacked":
            return images
        if kind == "fused":
            return self.fuse(leader, images)["fused"]
        raise ValueError(f"unknown follower input {kind!r}; expected one of {FOLLOWER_INPUTS}")

    def _seg_loss(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
        return losses.dice_ce_loss(logits, labels, jnp.asarray(self.class_weights, self.loss_dtype))

    def fusion_terms(
        self, out: dict[str, jax.Array], images: jax.Array, judges: Any = None
    ) -> dict[str, jax.Array]:
        """The physical regularisers of the upper level (every weighted term), unweighted; with
        ``fusion_adversarial > 0`` also ``adversarial``, the frozen discriminators ``judges``'
        generator term on the fused image (:meth:`fused_adversarial`)."""
        terms = losses.fusion_terms(out, images, tuple(name for name, _ in self.fusion_weights))
        if self.fusion_adversarial > 0:
            terms["adversarial"] = self.fused_adversarial(judges, out["fused"], images.shape[-1])
        if self.caf_weights:
            weights = jnp.asarray(self.caf_weights, jnp.float32)
            terms["caf"] = losses.caf_weighted_loss(
                weights, out["fused"], images, losses.fixed_conv_features
            )[0]
        return terms

    def _fusion_penalty(self, terms: dict[str, jax.Array]) -> jax.Array:
        registered = sum(weight * terms[name] for name, weight in self.fusion_weights)
        if self.fusion_adversarial > 0:
            registered = registered + self.fusion_adversarial * terms["adversarial"]
        return registered + terms["caf"] if self.caf_weights else registered

    def fused_adversarial(self, judges: Any, fused: jax.Array, n: int) -> jax.Array:
        """v1's adversarial term of the fusion stage: eq. 10 with the fused image as every
        discriminator's input, ``sum_i G(D_i(fused))``; the discriminators ``judges`` (stacked
        params, as in pre-training) are constants here (their gradient is stopped).

        Raises:
            ValueError: ``judges`` is None (the caller has no discriminators to pass).
        """
        if judges is None:
            raise ValueError("the fusion stage's adversarial term needs the pre-trained discriminators")
        logits = self._judge(jax.lax.stop_gradient(judges), jnp.broadcast_to(fused, (n, *fused.shape)))
        return n * losses.GENERATOR_LOSSES[self.generator_form](logits)

    # The bi-level problem: follower = inner, leader = outer.
    def inner_loss(self, follower: Any, leader: Any, batch: Batch):
        """Lower level: segmentation loss of the follower on the leader's fused image."""
        fused = self.fuse(leader, batch["image"])["fused"]
        loss = self._seg_loss(self.segment(follower, fused), batch["label"])
        return loss, {"seg": loss}

    def _upper_parts(self, follower: Any, leader: Any, batch: Batch, judges: Any):
        """The upper level's parts on ``batch``: the segmentation loss and the unweighted fusion terms."""
        out = self.fuse(leader, batch["image"])
        seg = self._seg_loss(self.segment(follower, out["fused"]), batch["label"])
        return seg, self.fusion_terms(out, batch["image"], judges)

    def outer_loss(self, follower: Any, leader: Any, batch: Batch, judges: Any = None):
        """Upper level: validation segmentation loss plus the weighted physical regularisers
        (``judges``: the frozen discriminators, needed with ``fusion_adversarial > 0``)."""
        seg, terms = self._upper_parts(follower, leader, batch, judges)
        return seg + self._fusion_penalty(terms), {"seg": seg, **terms}

    def joint_outer_loss(self, follower: Any, leader: Any, batch: Batch, judges: Any = None):
        """The outer loss the ``joint`` solver is given: the weighted fusion terms alone, so that
        ``inner_loss + weight * joint_outer_loss`` is Fuse4Seg v1's eq. 6 (``L^s + lambda L^f``,
        the segmentation loss counted once). The segmentation loss on ``batch`` is reported in the
        aux as ``seg`` (aux is not differentiated)."""
        seg, terms = self._upper_parts(follower, leader, batch, judges)
        return self._fusion_penalty(terms), {"seg": seg, **terms}

    # Single-level stages.
    def follower_loss(self, follower: Any, leader: Any, batch: Batch):
        """Follower-only stage (warm-up, or a baseline): the leader is held fixed."""
        x = self.follower_view(self.follower_input, leader, batch["image"])
        loss = self._seg_loss(self.segment(follower, x), batch["label"])
        return loss, {"seg": loss}

    def fusion_only_loss(self, leader: Any, judges: Any, batch: Batch):
        """Disjoint baseline: the leader on the fusion terms of the upper level alone (``judges``:
        the frozen discriminators with ``fusion_adversarial > 0``, else unused)."""
        terms = self.fusion_terms(self.fuse(leader, batch["image"]), batch["image"], judges)
        return self._fusion_penalty(terms), terms

    def _autoencode(self, leader: Any, images: jax.Array) -> dict[str, jax.Array]:
        """The leader's ``autoencode`` pass: ``images``, ``low``, ``high`` stacked modality-major,
        ``(N, B, H, W, C)``, in ``loss_dtype``."""
        dtype = jnp.dtype(self.compute_dtype)
        out = self.fusion.apply(cast_floats(leader, dtype), images.astype(dtype), method="autoencode")
        return cast_floats({k: out[k] for k in ("images", "low", "high")}, self.loss_dtype)

    @staticmethod
    def _autoencoder_terms(rec: dict[str, jax.Array], images: jax.Array) -> dict[str, jax.Array]:
        """CDDFuse phase I terms: sum over modalities of 5 SSIM-loss + MSE, and L_decomp."""
        recon = sum(
            5.0 * losses.ssim_loss(r, s) + jnp.mean((r - s) ** 2)
            for r, s in zip(rec["images"], modality_major(images), strict=True)
        )
        return {"recon": recon, "decomp": losses.decomposition_loss(rec["low"], rec["high"])}

    def _autoencoder_loss(self, rec: dict[str, jax.Array], images: jax.Array):
        """``(loss, terms)`` of the ``pretrain_objective``: CDDFuse phase I's ``recon +
        pretrain_decomp * decomp``, v1 eq. 9's ``sigma decomp + (1 - sigma) content`` (eq. 11,
        12), or SMFNet's stage I (eq. 17-19)."""
        if self.pretrain_objective == "smfnet":
            return self.smfnet_stage_one(rec, images)
        if self.pretrain_objective == "fuse4seg_v1":
            sources = modality_major(images)
            return losses.encoder_loss(rec["images"], sources, rec["low"], rec["high"], self.pretrain_sigma)
        terms = self._autoencoder_terms(rec, images)
        return terms["recon"] + self.pretrain_decomp * terms["decomp"], terms

    def pretrain_loss(self, leader: Any, _: Any, batch: Batch):
        """Autoencoder pre-training: the ``pretrain_objective``'s loss (by default CDDFuse phase I, per
        modality 5 SSIM-loss + MSE, plus ``pretrain_decomp`` (2) L_decomp)."""
        return self._autoencoder_loss(self._autoencode(leader, batch["image"]), batch["image"])

    def _judge(self, discriminators: Any, images: jax.Array) -> jax.Array:
        """Logits ``(N, B)`` of the N discriminators (params stacked on a leading axis), each on
        its own modality's images ``(N, B, H, W, 1)``."""
        dtype = jnp.dtype(self.compute_dtype)
        logits = jax.vmap(self.discriminator.apply)(cast_floats(discriminators, dtype), images.astype(dtype))
        return logits.astype(self.loss_dtype)

    def adversarial_pretrain_loss(self, leader: Any, discriminators: Any, batch: Batch):
        """Fuse4Seg v1 pre-training: the autoencoder loss plus a GAN game per modality.

        Returns ``L_leader + L_disc`` built so that its gradient with respect to the leader is
        that of ``L_leader = L_autoencoder + adversarial * sum_i G(D_i(rec_i))`` alone (the
        discriminators are stopped there) and with respect to the discriminators that of
        ``L_disc = sum_i BCE(D_i(M_i) real, D_i(rec_i) fake)`` alone (the reconstructions are
        stopped there): one forward pass, one gradient, simultaneous updates of both players.
        ``G`` is ``generator_form``: v1 eq. 10's ``log(1 - D)`` (``minimax``) or non-saturating;
        ``L_autoencoder`` is the ``pretrain_objective``'s loss (with ``fuse4seg_v1``, ``L_leader`` is
        v1's eq. 9 whole, ``lambda`` being ``adversarial``).
        """
        images = batch["image"]
        rec = self._autoencode(leader, images)
        autoencoder, terms = self._autoencoder_loss(rec, images)
        fake = rec["images"]
        real_logits = self._judge(discriminators, modality_major(images))
        fake_logits = self._judge(discriminators, jax.lax.stop_gradient(fake))
        fooled_logits = self._judge(jax.lax.stop_gradient(discriminators), fake)
        generator_loss = losses.GENERATOR_LOSSES[self.generator_form]
        # the losses average over (N, B); v1 eq. 10 sums its per-modality expectations
        n = images.shape[-1]
        generator = n * generator_loss(fooled_logits)
        discriminator = n * losses.discriminator_loss(real_logits, fake_logits)
        leader_loss = autoencoder + self.adversarial * generator
        aux = {**terms, "leader_loss": leader_loss, "generator": generator, "discriminator": discriminator}
        return leader_loss + discriminator, aux
