"""The Fuse4Seg objectives as pure functions of (parameters, batch).

A batch is a dict of arrays: ``image (B, H, W, N)`` float32 in [0, 1] and ``label (B, H, W)``
int32 (internal classes 0..3). The leader is the fusion network, the follower the segmentation
network; :class:`Objectives` turns them into the bi-level problem

    lower (follower):  L_seg(follower(fuse(x)), y)                      on D_tr
    upper (leader):    L_seg on D_val + alpha L_decomp + beta L_grad + gamma L_recon

(Fuse4Seg current version, eq. for L_upper; REFERENCE.md section 3-4), plus the single-level
objectives of the other stages (autoencoder pre-training, fusion-only, follower-only).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from fuse4seg_jax import losses
from fuse4seg_jax.models import PureModel

Batch = dict[str, jax.Array]
FOLLOWER_INPUTS = ("average", "fused", "stacked")


def cast_floats(tree: Any, dtype: jnp.dtype) -> Any:
    """Cast every floating-point leaf of ``tree`` to ``dtype`` (integer leaves are left alone)."""
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


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
        alpha, beta, gamma: weights of decomposition, gradient and reconstruction terms.
        class_weights: Dice class weights (background, NCR, ED, ET).
        follower_input: what the follower sees in the single-level follower stage.
        compute_dtype: ``float32`` or ``bfloat16``; parameters stay float32, losses are float32.
    """

    fusion: PureModel
    segmentation: PureModel
    alpha: float = 1.0
    beta: float = 5.0
    gamma: float = 0.05
    class_weights: tuple[float, ...] = (0.1, 1.0, 1.0, 1.0)
    follower_input: str = "average"
    compute_dtype: str = "float32"

    def fuse(self, leader: Any, images: jax.Array) -> dict[str, jax.Array]:
        """Run the leader; returns its output dict with float32 arrays."""
        dtype = jnp.dtype(self.compute_dtype)
        out = self.fusion.apply(cast_floats(leader, dtype), images.astype(dtype))
        return cast_floats(out, jnp.float32)

    def segment(self, follower: Any, x: jax.Array) -> jax.Array:
        """Follower logits ``(B, H, W, classes)`` as float32."""
        dtype = jnp.dtype(self.compute_dtype)
        logits = self.segmentation.apply(cast_floats(follower, dtype), x.astype(dtype))
        return logits.astype(jnp.float32)

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
        return losses.dice_ce_loss(logits, labels, jnp.asarray(self.class_weights, jnp.float32))

    def fusion_terms(self, out: dict[str, jax.Array], images: jax.Array) -> dict[str, jax.Array]:
        """The physical regularisers of the upper level, unweighted."""
        terms = {
            "grad": losses.gradient_loss(out["fused"], images),
            "recon": losses.reconstruction_loss(out["fused"], images),
        }
        if "low" in out and "high" in out:
            terms["decomp"] = losses.decomposition_loss(out["low"], out["high"])
        else:
            terms["decomp"] = jnp.zeros((), jnp.float32)
        return terms

    def _fusion_penalty(self, terms: dict[str, jax.Array]) -> jax.Array:
        return self.alpha * terms["decomp"] + self.beta * terms["grad"] + self.gamma * terms["recon"]

    # The bi-level problem: follower = inner, leader = outer.
    def inner_loss(self, follower: Any, leader: Any, batch: Batch):
        """Lower level: segmentation loss of the follower on the leader's fused image."""
        fused = self.fuse(leader, batch["image"])["fused"]
        loss = self._seg_loss(self.segment(follower, fused), batch["label"])
        return loss, {"seg": loss}

    def outer_loss(self, follower: Any, leader: Any, batch: Batch):
        """Upper level: validation segmentation loss plus the weighted physical regularisers."""
        out = self.fuse(leader, batch["image"])
        seg = self._seg_loss(self.segment(follower, out["fused"]), batch["label"])
        terms = self.fusion_terms(out, batch["image"])
        return seg + self._fusion_penalty(terms), {"seg": seg, **terms}

    # Single-level stages.
    def follower_loss(self, follower: Any, leader: Any, batch: Batch):
        """Follower-only stage (warm-up, or a baseline): the leader is held fixed."""
        x = self.follower_view(self.follower_input, leader, batch["image"])
        loss = self._seg_loss(self.segment(follower, x), batch["label"])
        return loss, {"seg": loss}

    def fusion_only_loss(self, leader: Any, _: Any, batch: Batch):
        """Disjoint baseline: the leader on the fusion terms of the upper level alone."""
        terms = self.fusion_terms(self.fuse(leader, batch["image"]), batch["image"])
        return self._fusion_penalty(terms), terms

    def pretrain_loss(self, leader: Any, _: Any, batch: Batch):
        """Autoencoder pre-training (CDDFuse phase I): per modality 5 SSIM-loss + MSE, + 2 L_decomp."""
        dtype = jnp.dtype(self.compute_dtype)
        params = cast_floats(leader, dtype)
        images = batch["image"]
        outs = [
            cast_floats(
                self.fusion.apply(params, images[..., i : i + 1].astype(dtype), method="reconstruct"),
                jnp.float32,
            )
            for i in range(images.shape[-1])
        ]
        recon = sum(
            5.0 * losses.ssim_loss(o["image"], images[..., i : i + 1])
            + jnp.mean((o["image"] - images[..., i : i + 1]) ** 2)
            for i, o in enumerate(outs)
        )
        decomp = losses.decomposition_loss(
            jnp.stack([o["low"] for o in outs]), jnp.stack([o["high"] for o in outs])
        )
        return recon + 2.0 * decomp, {"recon": recon, "decomp": decomp}
