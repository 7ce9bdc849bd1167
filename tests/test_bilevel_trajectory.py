"""bilevel.trajectory.run: the outer loop of bilevel.step, recorded step by step."""

import jax
import numpy as np
import optax

import bilevel
from bilevel import closed_form

INNER_OPT = optax.sgd(0.4)
OUTER_OPT = optax.sgd(0.3)
FROZEN_LEADER = optax.sgd(0.0)
STEPS, K = 4, 1
STEP = jax.jit(bilevel.step, static_argnames=("problem", "solver", "inner_opt", "outer_opt"))
HYPERGRADIENT = jax.jit(bilevel.hypergradient, static_argnums=(0, 1, 4))


def _run(cf, solver, outer_opt=OUTER_OPT, **options):
    state = bilevel.init(cf.inner_init, cf.outer_init, INNER_OPT, outer_opt, solver=solver)
    batches = [(cf.inner_batches(K), cf.outer_batch)] * STEPS
    return bilevel.trajectory.run(
        cf.problem, solver, state, batches, inner_opt=INNER_OPT, outer_opt=outer_opt, **options
    )


def test_it_takes_the_steps_of_bilevel_step_and_records_each_one():
    with jax.enable_x64(True):
        cf = closed_form.stackelberg()
        solver = bilevel.make_solver("implicit_cg_warm", max_iter=1)
        seen = []
        final, record = _run(cf, solver, observe=lambda s: seen.append(s) or {"leader0": s.outer_params[0]})
        state = bilevel.init(cf.inner_init, cf.outer_init, INNER_OPT, OUTER_OPT, solver=solver)
        losses = []
        for _ in range(STEPS):
            state, d = STEP(
                state,
                cf.inner_batches(K),
                cf.outer_batch,
                problem=cf.problem,
                solver=solver,
                inner_opt=INNER_OPT,
                outer_opt=OUTER_OPT,
            )
            losses.append(float(d["outer_loss"]))
        np.testing.assert_allclose(final.outer_params, state.outer_params, rtol=1e-12)
        np.testing.assert_allclose(final.solver_state, state.solver_state, rtol=1e-12)
        np.testing.assert_allclose(record["outer_loss"], losses, rtol=1e-12)
        assert len(seen) == STEPS + 1 and int(seen[-1].step) == STEPS
        np.testing.assert_allclose(record["leader0"], [float(s.outer_params[0]) for s in seen])
        assert record["time_s"][0] == 0.0 and np.all(np.diff(record["time_s"]) > 0)
        assert record["iterations"].tolist() == [1] * STEPS


def test_the_reference_is_compared_at_each_steps_own_point():
    """Against itself a solver is exact; first-order against exact CG at the first point has the
    error the two hypergradients there give."""
    with jax.enable_x64(True):
        cf = closed_form.stackelberg()
        exact = bilevel.make_solver("implicit_cg", max_iter=4)
        _, itself = _run(cf, exact, reference=exact)
        np.testing.assert_allclose(itself["cosine"], 1.0, atol=1e-12)
        np.testing.assert_allclose(itself["rel_error"], 0.0, atol=1e-12)
        first_order = bilevel.make_solver("first_order")
        _, record = _run(cf, first_order, reference=exact)
        point = (cf.inner_init, cf.outer_init, INNER_OPT, INNER_OPT.init(cf.inner_init), cf.inner_batches(K))
        g = HYPERGRADIENT(cf.problem, first_order, *point, cf.outer_batch).hypergrad
        g_ref = HYPERGRADIENT(cf.problem, exact, *point, cf.outer_batch).hypergrad
        expected = np.linalg.norm(g - g_ref) / np.linalg.norm(g_ref)
        np.testing.assert_allclose(record["rel_error"][0], expected, rtol=1e-10)
        assert record["rel_error"][0] > 0.05  # 0.062


def test_a_restarted_follower_starts_every_step_from_the_first_one():
    """With the leader frozen and the same batches, a restarted follower repeats the first step;
    a carried one keeps descending its loss."""
    with jax.enable_x64(True):
        cf = closed_form.stackelberg()
        solver = bilevel.make_solver("first_order")
        _, cold = _run(cf, solver, outer_opt=FROZEN_LEADER, restart_follower=True)
        _, warm = _run(cf, solver, outer_opt=FROZEN_LEADER)
        np.testing.assert_allclose(cold["inner_loss"], cold["inner_loss"][0], rtol=1e-12)
        assert np.all(np.diff(warm["inner_loss"]) < 0)
        assert warm["inner_loss"][0] == cold["inner_loss"][0]
