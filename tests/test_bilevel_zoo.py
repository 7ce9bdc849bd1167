"""Solvers that carry state across outer steps: warm-started implicit, F2SA, BOME, SOBA (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_bilevel_outer_loop import _play

import bilevel
from bilevel import closed_form


def _rel_error(estimate, exact):
    return float(jnp.linalg.norm(estimate - exact) / jnp.linalg.norm(exact))


@pytest.mark.parametrize("name", ["implicit_cg_warm", "implicit_neumann_warm"])
def test_warm_started_solve_iterated_to_convergence_is_cold_cg(name):
    with jax.enable_x64(True):
        cf = closed_form.quadratic()
        y = cf.inner_solution(cf.outer_init)
        sgd = optax.sgd(0.1)
        options = {"max_iter": 300, "tol": 1e-13, "solve_loop": "while"}
        if name == "implicit_neumann_warm":
            options["step_size"] = 1.0 / float(jnp.linalg.eigvalsh(cf.inner_hessian(cf.outer_init))[-1])
        warm = bilevel.make_solver(name, **options)
        # any start: the previous solution of another problem
        start = jnp.linspace(-1.0, 1.0, cf.inner_init.size)
        point = (y, cf.outer_init, sgd, sgd.init(y), cf.inner_batches(1), cf.outer_batch)
        out = bilevel.hypergradient(cf.problem, warm, *point, start)
        cold = bilevel.hypergradient(
            cf.problem, bilevel.make_solver("implicit_cg", max_iter=20, tol=1e-13), *point
        )
        assert _rel_error(out.hypergrad, cold.hypergrad) <= 1e-8
        assert _rel_error(out.hypergrad, cf.hypergradient(cf.outer_init)) <= 1e-8
        assert not out.diagnostics["failed"]
        # the state carried on is the solution x of H x = dF/dy
        grad_y = jax.grad(cf.problem.outer_loss)(out.inner_params, cf.outer_init, cf.outer_batch)
        exact_x = jnp.linalg.solve(cf.inner_hessian(cf.outer_init), grad_y)
        assert _rel_error(out.solver_state, exact_x) <= 1e-8
        # started at its own solution, the solve has nothing left to do (CG sees it from the
        # residual; Neumann's test on the step's size takes one step)
        again = bilevel.hypergradient(cf.problem, warm, *point, out.solver_state)
        assert int(again.diagnostics["iterations"]) == (0 if name == "implicit_cg_warm" else 1)
        assert _rel_error(again.hypergrad, out.hypergrad) <= 1e-12


@pytest.mark.parametrize(
    "name, options", [("implicit_cg_warm", {}), ("implicit_neumann_warm", {"step_size": 0.6})]
)
def test_two_warm_started_iterations_per_step_reach_the_equilibrium(name, options):
    """Two solve iterations per outer step from the last solution reach the quadratic game's
    equilibrium to 1e-6, where a cold solve with two iterations converges to another point.
    (Follower SGD with lr 0.6 on a Hessian with spectrum [0.52, 2.2] contracts by 0.69 per step;
    ``tol`` is near rounding, so each step iterates until rounding or twice.)"""
    with jax.enable_x64(True):
        cf = closed_form.quadratic()
        inner_opt, outer_opt = optax.sgd(0.6), optax.sgd(0.04)
        warm = bilevel.make_solver(name, tol=1e-14, **options)
        state, history = _play(cf, warm, 400, 2, inner_opt, outer_opt)
        diagnostics = history[-1]
        np.testing.assert_allclose(state.outer_params, cf.equilibrium, atol=1e-6)
        assert 1 <= int(diagnostics["iterations"]) <= 2
        assert float(diagnostics["residual"]) <= 1e-6
        cold = bilevel.make_solver(name, tol=1e-14, warm_start=False, **options)
        cold_state, _ = _play(cf, cold, 400, 2, inner_opt, outer_opt)
        assert float(jnp.linalg.norm(cold_state.outer_params - cf.equilibrium)) > 1e-2


def test_f2sa_bias_shrinks_as_one_over_the_penalty():
    """At the exact best response and with both follower copies converged (K = 40 steps that
    contract by 0.2 each), the hypergradient's error is C / lam with one constant C, and the
    value-function gap is O(1 / lam^2)."""
    with jax.enable_x64(True):
        cf = closed_form.stackelberg()
        exact = cf.hypergradient(cf.outer_init)
        sgd = optax.sgd(0.4)
        penalties = (10.0, 100.0, 1000.0)
        outs = [
            cf.solve(
                bilevel.F2SA(penalty=lam), sgd, cf.inner_batches(40), inner=cf.inner_solution(cf.outer_init)
            )
            for lam in penalties
        ]
        scaled = [lam * _rel_error(out.hypergrad, exact) for lam, out in zip(penalties, outs, strict=True)]
        np.testing.assert_allclose(scaled, scaled[0], rtol=0.1)
        assert 0 < scaled[0] < 1
        gaps = [float(out.diagnostics["residual"]) for out in outs]
        assert all(0 < b < a / 50 for a, b in zip(gaps, gaps[1:], strict=False)), gaps


def test_f2sa_outer_loop_ends_within_c_over_lambda_of_the_equilibrium():
    """The outer loop converges to a point O(1 / lam) from the equilibrium (the bias bound of
    the penalty method): its distance times lam is one constant, 0.34 on this game; growing the
    penalty every step (lam = 10 + 10 k) ends near the distance of the last lam."""
    with jax.enable_x64(True):
        cf = closed_form.stackelberg()
        inner_opt, outer_opt = optax.sgd(0.4), optax.sgd(0.3)

        def distance(solver):
            state, _ = _play(cf, solver, 150, 10, inner_opt, outer_opt)
            return float(jnp.linalg.norm(state.outer_params - cf.equilibrium)), state

        scaled = [lam * distance(bilevel.F2SA(penalty=lam))[0] for lam in (10.0, 100.0, 1000.0)]
        np.testing.assert_allclose(scaled, 0.34, rtol=0.05)
        grown, state = distance(bilevel.F2SA(penalty=10.0, penalty_growth=10.0))
        assert int(state.solver_state.outer_steps) == 150
        assert grown < 2 * 0.34 / (10.0 + 10.0 * 150)


def test_bome_ends_within_a_distance_proportional_to_its_step():
    """At the equilibrium ``q`` and its gradient vanish, so BOME's direction is ``dF/dx``, which
    is not zero there: discrete steps settle into a 2-cycle around it whose distance (and value-
    function gap) shrinks with the step size, 0.48 x the step on this game."""
    with jax.enable_x64(True):
        cf = closed_form.stackelberg()
        distances, gaps = [], []
        for step_size in (0.1, 0.01):
            solver = bilevel.BOME(step_size=step_size)
            state, history = _play(cf, solver, int(30 / step_size), 10, optax.sgd(0.4), optax.sgd(step_size))
            distances.append(float(jnp.linalg.norm(state.outer_params - cf.equilibrium)) / step_size)
            gaps.append(float(history[-1]["residual"]))
        np.testing.assert_allclose(distances, 0.48, rtol=0.15)
        assert 0 < gaps[1] < gaps[0] / 50


def test_soba_converges_in_expectation_on_ridge_with_noisy_batches():
    """Ridge with 8 training and 32 validation rows; each outer step draws 4 training rows for the
    follower's one step (and SOBA's Hessian) and 8 validation rows for the outer loss (seeded).
    The leader starts 2.3 from the stationary point; the mean of its last 1,000 of 3,000 iterates
    is within 0.03 of it, while single iterates scatter by about 0.07."""
    with jax.enable_x64(True):
        cf = closed_form.ridge(n_train=8, n_val=32, seed=3)
        lo, hi = -4.0, -3.0  # the hypergradient changes sign once in there: bisect
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if float(cf.hypergradient(jnp.asarray(mid))) < 0 else (lo, mid)
        stationary = 0.5 * (lo + hi)
        inner_opt, outer_opt = optax.sgd(0.2), optax.sgd(0.05)
        solver = bilevel.SOBA(step_size=0.2)
        rng = np.random.default_rng(0)
        steps = 3000
        rows = np.stack([rng.choice(8, 4, replace=False) for _ in range(steps)])
        val_rows = np.stack([rng.choice(32, 8, replace=False) for _ in range(steps)])
        inner_batches = jax.tree.map(lambda a: a[rows][:, None], cf.inner_batch)  # (steps, K=1, 4, ...)
        outer_batches = jax.tree.map(lambda a: a[val_rows], cf.outer_batch)

        def body(state, batches):
            state, _ = bilevel.step(
                state, *batches, problem=cf.problem, solver=solver, inner_opt=inner_opt, outer_opt=outer_opt
            )
            return state, state.outer_params

        start = bilevel.init(cf.inner_init, cf.outer_init, inner_opt, outer_opt, solver=solver)
        _, path = jax.jit(lambda s, b: jax.lax.scan(body, s, b))(start, (inner_batches, outer_batches))
        tail = np.asarray(path[-1000:])
        assert abs(float(cf.outer_init) - stationary) > 2
        assert abs(tail.mean() - stationary) < 0.03
        assert 0.02 < tail.std() < 0.2  # the noise is real: single iterates do not settle


def test_a_state_without_the_solvers_state_is_refused_with_the_fix():
    with jax.enable_x64(True):
        cf = closed_form.stackelberg()
        sgd = optax.sgd(0.1)
        state = bilevel.init(cf.inner_init, cf.outer_init, sgd, sgd)  # no solver: no state for SOBA
        with pytest.raises(ValueError, match=r"bilevel.init\(..., solver=solver\)"):
            bilevel.step(
                state,
                cf.inner_batches(1),
                cf.outer_batch,
                problem=cf.problem,
                solver=bilevel.SOBA(),
                inner_opt=sgd,
                outer_opt=sgd,
            )


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("f2sa", {"penalty": 0.0}, "penalty must be positive"),
        ("f2sa", {"penalty_growth": -1.0}, "penalty_growth must be >= 0"),
        ("soba", {"step_size": 0.0}, "step_size must be positive"),
        ("bome", {"eta": 0.0}, "eta must be positive"),
    ],
)
def test_invalid_options_are_rejected(name, options, message):
    with pytest.raises(bilevel.SolverConfigError, match=message):
        bilevel.make_solver(name, **options)
