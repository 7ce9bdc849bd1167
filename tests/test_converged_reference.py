"""At a converged follower of the tiny Fuse4Seg problem in float64, the hypergradients agree.

Issue 19's first must-show: with the follower minimised to a gradient norm far below 1e-6 (by
``bilevel.study.converge_follower``), ``unrolled`` with many small SGD steps from there and
``implicit_cg`` give the same leader hypergradient as the ``converged`` reference. The follower's
inner loss carries an L2 term: without it the segmentation loss has directions of zero
curvature (LayerNorm's scale invariance) and, on separable pixels, no finite minimiser, so
neither a converged point nor an invertible Hessian is guaranteed
(``docs/solvers.md#converging-the-follower``).
"""

import math

import jax
import optax
import pytest

import bilevel
from bilevel import study, tree
from fuse4seg_jax.train import solver_study
from fuse4seg_jax.train.config import load_config

TINY_CONFIG = "configs/smoke.py"
# the smoke config with a narrower follower, 2 slices per batch, and no warm-up (a fresh state)
SMALLER = (
    "--config.stages.pretrain=0",
    "--config.stages.follower=0",
    "--config.batch.tr_size=2",
    "--config.batch.val_size=2",
    "--config.model.segmentation_sizes.convnext_unet.widths=(4,8)",
)
L2 = 1.0  # the inner loss's L2 weight: (L2 / 2) ||w||^2 on the follower's parameters


def regularised(problem: bilevel.Problem, weight: float) -> bilevel.Problem:
    """``problem`` with ``weight / 2 * ||inner||^2`` added to its inner loss."""

    def inner_loss(inner, outer, batch):
        loss, aux = problem.inner_value(inner, outer, batch)
        return loss + 0.5 * weight * tree.vdot(inner, inner), aux

    return bilevel.Problem(inner_loss, problem.outer_loss, has_aux=True)


@pytest.mark.slow
def test_unrolled_and_implicit_cg_agree_with_the_converged_reference(tiny_overrides, standard_promotion):
    with jax.enable_x64(True):
        config = load_config(TINY_CONFIG, [*tiny_overrides, *SMALLER])
        trainer, state, at, _ = solver_study.study_state(config, progress=print)
        call = solver_study.study_point(trainer, state, at, x64=True)
        call = call._replace(problem=regularised(call.problem, L2))
        reached, descent = study.converge_follower(call, grad_tol=1e-9, max_steps=200, lr=1e-3)
        assert descent["grad_norm"] <= 1e-9, descent
        curvature = study.curvature_report(
            reached, reached.inner_params, num_iter=30, grad_tol=1e-6, key=jax.random.key(0)
        )
        print(descent, curvature["verdict"])
        assert curvature["smallest"] > 0, curvature["verdict"]
        # already converged: the reference's own minimisation takes no step
        reference, info = study.reference(
            reached, "converged:grad_tol=1e-9,lr=1e-3,tol=1e-10,max_iter=2000", key=jax.random.key(0)
        )
        assert info["descent_steps"] == 0 and info["reason"] == "ok", info
        implicit, implicit_info = study.solve_reference(
            bilevel.make_solver("implicit_cg", max_iter=300, tol=1e-6, solve_loop="while"), reached
        )
        # many small steps: the K-step map's derivative tends to the implicit one as K lr lambda_min grows
        lr = 1.0 / curvature["largest"]
        k = math.ceil(5.0 / (lr * L2))
        sgd = optax.sgd(lr)
        many = reached._replace(
            inner_opt=sgd,
            inner_opt_state=sgd.init(reached.inner_params),
            inner_batches=jax.tree.map(lambda x: x.repeat(k, axis=0), reached.inner_batches),
        )
        unrolled, _ = study.solve_reference(bilevel.Unrolled(scan_inner=True), many)
        cosines = {
            "unrolled-implicit": float(tree.cosine(unrolled, implicit)),
            "unrolled-reference": float(tree.cosine(unrolled, reference)),
            "implicit-reference": float(tree.cosine(implicit, reference)),
        }
        print(f"K = {k}, lr = {lr:.3g}:", cosines, implicit_info)
        assert min(cosines.values()) >= 0.99, cosines
