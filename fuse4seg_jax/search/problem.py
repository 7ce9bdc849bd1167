"""CAF's loss search (CAF eq. 2) as a ``bilevel.Problem``: inner = fusion net, outer = beta.

    inner (follower):  L_f(beta) = saliency_mse + sum_k softmax(beta)_k term_k   on D_train
    outer (leader):    L_t(task(fuse(x)), y)                                    on D_search

The task network's parameters are not a variable of this problem: Algorithm 1 updates them in
their own step, and the outer loss reads them from the outer batch (``batch["task"]``), held
fixed while beta's hypergradient is taken. The outer loss does not depend on beta directly, so
its whole gradient comes through the fusion network's step: ``first_order`` gives beta a zero
hypergradient by construction (``docs/caf_search.md#what-is-differentiated``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

import bilevel
from fuse4seg_jax.losses.caf import FeatureFn, caf_loss
from fuse4seg_jax.losses.caf_features import fixed_conv_features

Params = Any
Batch = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class SearchProblem:
    """The search's three losses over two user-given networks; hashable (a static ``jit`` argument).

    Arguments:
        fuse: ``(fusion params, images (B, H, W, N)) -> fused (B, H, W, 1)`` in ``[0, 1]``.
        task_loss: ``(task params, fusion params, batch) -> (loss, aux)``, the task network's loss
            on the fused images of ``batch`` (``image (B, H, W, N)``, ``label``), e.g.
            ``fuse4seg_jax.train.objectives.Objectives.inner_loss``.
        feature_fn: the perceptual terms' feature network.
    """

    fuse: Callable[[Params, jax.Array], jax.Array]
    task_loss: Callable[[Params, Params, Batch], tuple[jax.Array, Any]]
    feature_fn: FeatureFn = fixed_conv_features

    def fusion_loss(self, fusion: Params, beta: jax.Array, batch: Batch) -> tuple[jax.Array, dict]:
        """``L_f(beta)`` on ``batch``, with the unweighted terms as aux."""
        images = batch["image"]
        return caf_loss(beta, self.fuse(fusion, images), images, self.feature_fn)

    def search_loss(self, fusion: Params, beta: jax.Array, batch: Batch) -> tuple[jax.Array, dict]:
        """The task loss of ``batch["task"]`` (fixed) on the fused images of ``batch``."""
        del beta  # CAF's upper objective sees beta only through the fusion network
        loss, _ = self.task_loss(batch["task"], fusion, batch)
        return loss, {}

    def as_bilevel(self) -> bilevel.Problem:
        """The ``bilevel.Problem`` (equal for equal search problems, so compilations are shared)."""
        return bilevel.Problem(self.fusion_loss, self.search_loss, has_aux=True)
