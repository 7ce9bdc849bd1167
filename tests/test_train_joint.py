"""The ``joint`` baseline in the pipeline is Fuse4Seg v1's eq. 6: ``L^s + lambda L^f``."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bilevel

JOINT = ("--config.bilevel.solver=joint", "--config.bilevel.options.joint.weight=0.3")


def test_the_joint_solver_gets_the_fusion_penalty_as_its_outer_loss(tiny_trainer):
    joint, bilevel_run = tiny_trainer(*JOINT), tiny_trainer()
    assert joint.problem.outer_loss == joint.objectives.joint_outer_loss
    assert bilevel_run.problem.outer_loss == bilevel_run.objectives.outer_loss


@pytest.mark.slow
def test_joint_leader_gradient_is_v1_eq6(tiny_trainer, tiny_batches, standard_promotion):
    lam = 0.3
    trainer = tiny_trainer(*JOINT, "--config.bilevel.inner_steps=1")
    obj = trainer.objectives
    state = trainer.init_state()
    tr, val = (jax.tree.map(jnp.asarray, b) for b in tiny_batches)
    out = bilevel.hypergradient(
        trainer.problem,
        trainer.solver,
        state["follower"],
        state["leader"],
        trainer.follower_opt,
        state["follower_opt"],
        jax.tree.map(lambda x: x[None], tr),
        val,
    )

    # eq. 6 by hand at the follower's new point: the segmentation loss once (on D_tr), the fusion
    # terms alone weighed by lambda (on D_val), no segmentation loss of D_val
    def fusion(leader):
        terms = obj.fusion_terms(obj.fuse(leader, val["image"]), val["image"])
        return sum(w * terms[name] for name, w in obj.fusion_weights)

    def eq6(leader):
        return obj.inner_loss(out.inner_params, leader, tr)[0] + lam * fusion(leader)

    expected = jax.grad(eq6)(state["leader"])
    want = float(optax.tree.norm(expected))
    diff = float(optax.tree.norm(jax.tree.map(jnp.subtract, out.hypergrad, expected)))
    assert want > 0 and diff <= 1e-5 * want, (diff, want)
    # the outer loss is the fusion penalty alone; D_val's segmentation loss is only reported
    assert np.isclose(float(out.diagnostics["outer_loss"]), float(fusion(state["leader"])), rtol=1e-5)
    assert float(out.outer_aux["seg"]) > 0
