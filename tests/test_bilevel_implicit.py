"""Implicit (IFT) hypergradients against closed forms, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bilevel
from bilevel import closed_form, linear_solve

SGD = optax.sgd(0.1)


def _at_solution(cf, solver, inner_opt=SGD, k=1):
    """The solver's output (eager: tiny problems) with the follower at its exact best response."""
    return cf.solve(solver, inner_opt, cf.inner_batches(k), inner=cf.inner_solution(cf.outer_init))


def _rel_error(estimate, exact):
    return float(jnp.linalg.norm(estimate - exact) / jnp.linalg.norm(exact))


@pytest.mark.parametrize(
    "make", [closed_form.ridge, lambda: closed_form.ridge(per_feature=True), closed_form.quadratic]
)
def test_cg_matches_closed_form_to_1e8(make):
    with jax.enable_x64(True):
        cf = make()
        out = _at_solution(cf, bilevel.Implicit(linear_solver=bilevel.CG(max_iter=8, tol=1e-12)))
        assert _rel_error(out.hypergrad, cf.hypergradient(cf.outer_init)) <= 1e-8
        assert not out.diagnostics["failed"]
        assert out.diagnostics["residual"] <= 1e-12
        # CG in exact arithmetic needs at most dim(inner) iterations.
        assert 1 <= out.diagnostics["iterations"] <= cf.inner_init.size + 1


def test_jaxopt_backend_agrees_with_ours_to_1e8():
    with jax.enable_x64(True):
        cf = closed_form.ridge(per_feature=True)
        ours = _at_solution(cf, bilevel.make_solver("implicit_cg", max_iter=8, tol=1e-12))
        theirs = _at_solution(cf, bilevel.make_solver("implicit_jaxopt", max_iter=8, tol=1e-12))
        assert _rel_error(theirs.hypergrad, ours.hypergrad) <= 1e-8
        assert _rel_error(ours.hypergrad, cf.hypergradient(cf.outer_init)) <= 1e-8


@pytest.mark.parametrize(
    "make",
    [
        lambda: closed_form.ridge(per_feature=True),
        pytest.param(closed_form.logistic, marks=pytest.mark.slow),
    ],
)
def test_neumann_and_fixed_point_converge_to_the_same_value(make):
    with jax.enable_x64(True):
        cf = make()
        lipschitz = float(jnp.linalg.eigvalsh(cf.inner_hessian(cf.outer_init))[-1])
        options = {"max_iter": 400, "tol": 1e-13, "solve_loop": "while"}
        neumann = _at_solution(
            cf, bilevel.make_solver("implicit_neumann", step_size=1.0 / lipschitz, **options)
        )
        # The fixed point iterates heavy-ball SGD's own linearised step: a different iteration.
        fixed = _at_solution(
            cf,
            bilevel.make_solver("implicit_fixed_point", **options),
            inner_opt=optax.sgd(0.5 / lipschitz, momentum=0.5),
        )
        exact = cf.hypergradient(cf.outer_init)
        assert _rel_error(neumann.hypergrad, exact) <= 1e-9
        assert _rel_error(fixed.hypergrad, neumann.hypergrad) <= 1e-9
        assert not neumann.diagnostics["failed"] and not fixed.diagnostics["failed"]


def test_fixed_point_with_sgd_is_neumann_with_the_learning_rate():
    with jax.enable_x64(True):
        cf = closed_form.ridge()
        lr = 0.3
        neumann = _at_solution(
            cf, bilevel.Implicit(linear_solver=bilevel.Neumann(step_size=lr, max_iter=7, tol=1e-30))
        )
        fixed = _at_solution(cf, bilevel.ImplicitFixedPoint(max_iter=7, tol=1e-30), inner_opt=optax.sgd(lr))
        np.testing.assert_allclose(fixed.hypergrad, neumann.hypergrad, rtol=1e-12)
        assert neumann.diagnostics["iterations"] == fixed.diagnostics["iterations"] == 7


ITERATIVE = ["implicit_cg", "implicit_neumann", "implicit_fixed_point"]


def _iterative(name, step_size, **options):
    """``make_solver(name, ...)``, with Neumann's ``step_size`` where the name takes one."""
    if "step_size" in bilevel.solver_options(name):
        options["step_size"] = step_size
    return bilevel.make_solver(name, **options)


@pytest.mark.parametrize("name", ITERATIVE)
def test_error_decreases_with_iterations(name):
    with jax.enable_x64(True):
        cf = closed_form.ridge(per_feature=True)
        exact = cf.hypergradient(cf.outer_init)
        errors = [
            _rel_error(
                _at_solution(
                    cf,
                    _iterative(name, 0.4, max_iter=n, tol=1e-14),
                    inner_opt=optax.sgd(0.4),
                ).hypergrad,
                exact,
            )
            for n in (1, 2, 4, 16)
        ]
        # Monotone until machine precision, and at least 100x smaller at the end.
        assert all(b <= a + 1e-14 for a, b in zip(errors, errors[1:], strict=False)), errors
        assert errors[-1] <= errors[0] / 100, errors


def test_python_and_while_loops_give_the_same_iterates():
    with jax.enable_x64(True):
        cf = closed_form.quadratic()
        outs = [
            _at_solution(cf, bilevel.Implicit(linear_solver=bilevel.CG(max_iter=4, solve_loop=loop)))
            for loop in ("python", "while")
        ]
        np.testing.assert_allclose(outs[0].hypergrad, outs[1].hypergrad, rtol=1e-12)
        assert outs[0].diagnostics["iterations"] == outs[1].diagnostics["iterations"] == 4


def _indefinite_problem():
    """f(y, x) = y^T diag(1, -1, 1e-8) y / 2 - x^T y, F(y, x) = |y - 1|^2 / 2."""
    diagonal = jnp.array([1.0, -1.0, 1e-8])

    def inner(y, x, batch):
        return 0.5 * jnp.sum(batch * diagonal * y**2) - x @ y

    def outer(y, x, batch):
        return 0.5 * jnp.sum((y - batch) ** 2)

    return bilevel.Problem(inner, outer)


@pytest.mark.parametrize("name", ITERATIVE)
def test_indefinite_hessian_sets_failed_and_reports_residual(name):
    with jax.enable_x64(True):
        problem, opt = _indefinite_problem(), optax.sgd(0.5)
        y, x = jnp.array([0.3, -0.2, 0.1]), jnp.array([0.3, 0.2, 0.0])
        out = bilevel.hypergradient(
            problem,
            _iterative(name, 0.5, max_iter=20),
            y,
            x,
            opt,
            opt.init(y),
            jnp.ones((1, 3)),
            jnp.ones(3),
        )
        assert out.diagnostics["failed"]
        assert out.diagnostics["residual"] > 1e-6
        assert jnp.all(jnp.isfinite(out.hypergrad))


def test_damping_solves_the_shifted_system_and_rescues_an_ill_conditioned_solve():
    with jax.enable_x64(True):
        cf = closed_form.ridge()
        damping = 0.7
        out = _at_solution(
            cf, bilevel.Implicit(linear_solver=bilevel.CG(max_iter=8, tol=1e-12), damping=damping)
        )
        # Closed form of the damped hypergradient: dF/dlog_reg = -reg * w* . (H + d I)^-1 g.
        x, log_reg = cf.outer_init, cf.outer_init
        w = cf.inner_solution(x)
        g = cf.outer_batch["x"].T @ (cf.outer_batch["x"] @ w - cf.outer_batch["y"])
        g = g / cf.outer_batch["x"].shape[0]
        shifted = cf.inner_hessian(x) + damping * jnp.eye(w.size)
        expected = -jnp.exp(log_reg) * jnp.sum(w * jnp.linalg.solve(shifted, g))
        assert abs(float(out.hypergrad - expected)) <= 1e-10 * abs(float(expected))
        assert not out.diagnostics["failed"]

        problem, opt = _indefinite_problem(), optax.sgd(0.5)
        y, x = jnp.array([0.3, -0.2, 0.1]), jnp.array([0.3, 0.2, 0.0])
        damped = bilevel.hypergradient(
            problem,
            bilevel.Implicit(linear_solver=bilevel.CG(max_iter=20), damping=2.0),
            y,
            x,
            opt,
            opt.init(y),
            jnp.ones((1, 3)),
            jnp.ones(3),
        )
        assert not damped.diagnostics["failed"]


def test_mean_hessian_batch_uses_all_inner_batches():
    with jax.enable_x64(True):
        cf = closed_form.quadratic()
        # Two batches whose linear terms differ do not change H; scaling A in one batch does.
        batches = jax.tree.map(lambda leaf: jnp.stack([leaf, 3.0 * leaf]), cf.inner_batch)
        y, opt = cf.inner_solution(cf.outer_init), optax.sgd(1e-3)
        outs = {
            which: bilevel.hypergradient(
                cf.problem,
                bilevel.Implicit(linear_solver=bilevel.CG(max_iter=8, tol=1e-12), hessian_batch=which),
                y,
                cf.outer_init,
                opt,
                opt.init(y),
                batches,
                cf.outer_batch,
            )
            for which in ("last", "mean")
        }
        # Batch t has f_t = s_t f (s = 1, 3): H_last = 3 H and H_mean = 2 H, M scales alike,
        # so the mixed term M H^-1 v is the same; only the direct partial is shared exactly.
        np.testing.assert_allclose(outs["last"].hypergrad, outs["mean"].hypergrad, rtol=1e-10)


def _reason(out) -> str:
    return linear_solve.REASONS[int(out.diagnostics["reason"])]


@pytest.mark.parametrize("name", ["implicit_cg", "implicit_neumann", "implicit_jaxopt"])
def test_an_indefinite_hessian_is_reported_as_negative_curvature_by_every_linear_solver(name):
    with jax.enable_x64(True):
        problem, opt = _indefinite_problem(), optax.sgd(0.5)
        # One SGD step takes y to about (1, 1.5, 1), so dF/dy = (0, 0.5, 0) lies on the negative
        # eigenvector: the answer of any solver (jaxopt's included) shows the negative curvature.
        y, x = jnp.array([1.7, 14 / 15, 1.0]), jnp.array([0.3, 0.2, 0.0])
        out = bilevel.hypergradient(
            problem, _iterative(name, 0.5, max_iter=20), y, x, opt, opt.init(y), jnp.ones((1, 3)), jnp.ones(3)
        )
        assert out.diagnostics["failed"] and _reason(out) == "negative curvature"


@pytest.mark.parametrize("name", ITERATIVE)
def test_too_few_iterations_are_reported_as_the_iteration_limit(name):
    with jax.enable_x64(True):
        cf = closed_form.quadratic()
        lr = 1.0 / float(jnp.linalg.eigvalsh(cf.inner_hessian(cf.outer_init))[-1])
        few = _at_solution(cf, _iterative(name, lr, max_iter=1, tol=1e-10), inner_opt=optax.sgd(lr))
        enough = _at_solution(
            cf, _iterative(name, lr, max_iter=1000, tol=1e-10, solve_loop="while"), inner_opt=optax.sgd(lr)
        )
        assert few.diagnostics["failed"] and _reason(few) == "iteration limit"
        assert not enough.diagnostics["failed"] and _reason(enough) == "ok"


def test_a_converged_solve_held_to_a_tolerance_below_its_rounding_reports_the_residual():
    # CG stops on its recursively updated residual; the true one, recomputed in float32, cannot
    # follow it below rounding, so a tolerance under float32's reach is flagged as such.
    cf = closed_form.ridge(n_train=400, n_val=200, n_features=100, per_feature=True)
    out = _at_solution(cf, bilevel.make_solver("implicit_cg", max_iter=200, tol=1e-9, solve_loop="while"))
    assert out.diagnostics["residual"] > 1e-9 and _reason(out) == "residual above tol"
    default = _at_solution(cf, bilevel.make_solver("implicit_cg", max_iter=200, solve_loop="while"))
    assert not default.diagnostics["failed"] and default.diagnostics["residual"] <= linear_solve.DEFAULT_TOL


def test_a_non_finite_point_is_reported_as_non_finite():
    with jax.enable_x64(True):
        problem, opt = _indefinite_problem(), optax.sgd(0.5)
        y, x = jnp.array([0.3, jnp.nan, 0.1]), jnp.array([0.3, 0.2, 0.0])
        for name in ("first_order", "implicit_cg"):
            out = bilevel.hypergradient(
                problem, bilevel.make_solver(name), y, x, opt, opt.init(y), jnp.ones((1, 3)), jnp.ones(3)
            )
            assert out.diagnostics["failed"] and _reason(out) == "non-finite", name
