"""A user's own linear solver and own solver, defined here in a few lines, work like the built-in ones."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import bilevel
from bilevel import closed_form

SGD = optax.sgd(0.1)


def dense_solve(matvec, b):
    """A linear solver: materialise ``A`` column by column and solve it with ``jnp.linalg.solve``."""
    flat_b, unravel = ravel_pytree(b)
    basis = jnp.eye(flat_b.size, dtype=flat_b.dtype)
    columns = jax.vmap(lambda e: ravel_pytree(matvec(unravel(e)))[0])(basis)
    x = jnp.linalg.solve(columns.T, flat_b)
    return bilevel.SolveResult(unravel(x), jnp.ones((), jnp.int32), jnp.asarray(True))


@dataclasses.dataclass(frozen=True)
class SteepestDescent:
    """A linear solver with an option: ``max_iter`` steps of steepest descent with exact line search."""

    max_iter: int = 40

    def __call__(self, matvec, b):
        x = jnp.zeros_like(b)
        for _ in range(self.max_iter):
            r = b - matvec(x)
            rr = r @ r
            # Once the residual is exactly zero the step length is 0 / 0: stay put.
            x = x + jnp.where(rr > 0, rr / jnp.where(rr > 0, r @ matvec(r), 1.0), 0.0) * r
        return bilevel.SolveResult(x, jnp.asarray(self.max_iter, jnp.int32), jnp.asarray(True))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScaledFirstOrder(bilevel.Solver):
    """A solver: the first-order hypergradient times ``scale``."""

    scale: float = 1.0

    def solve(self, call):
        inner, state, info, outer = self.follow(call)
        hypergrad = jax.tree.map(lambda g: self.scale * g, outer.grad_outer)
        return bilevel.solver_output(inner, state, hypergrad, info, outer)


# The registry is global: register once per session, under names no other test uses.
if "test_scaled_first_order" not in bilevel.solver_names():
    bilevel.register_solver("test_scaled_first_order", ScaledFirstOrder)
    bilevel.register_solver("test_implicit_steepest_descent", *bilevel.implicit_with(SteepestDescent))


def _at_solution(cf, solver, k=1):
    return cf.solve(solver, SGD, cf.inner_batches(k), inner=cf.inner_solution(cf.outer_init))


def _rel_error(estimate, exact):
    return float(jnp.linalg.norm(estimate - exact) / jnp.linalg.norm(exact))


def test_a_linear_solver_function_plugs_into_implicit_and_jit():
    with jax.enable_x64(True):
        cf = closed_form.ridge(per_feature=True)
        y = cf.inner_solution(cf.outer_init)
        # A module-level function is hashable, so the solver holding it is a static jit argument.
        hypergradient = jax.jit(bilevel.hypergradient, static_argnames=("problem", "solver", "inner_opt"))
        dense = hypergradient(
            problem=cf.problem,
            solver=bilevel.Implicit(linear_solver=dense_solve),
            inner_params=y,
            outer_params=cf.outer_init,
            inner_opt=SGD,
            inner_opt_state=SGD.init(y),
            inner_batches=cf.inner_batches(1),
            outer_batch=cf.outer_batch,
        )
        cg = _at_solution(cf, bilevel.make_solver("implicit_cg", max_iter=8, tol=1e-12))
        assert _rel_error(dense.hypergrad, cg.hypergrad) <= 1e-8
        assert _rel_error(dense.hypergrad, cf.hypergradient(cf.outer_init)) <= 1e-8
        # Without a ``tol`` the solver's own verdict decides; the true residual is still reported.
        assert not dense.diagnostics["failed"] and dense.diagnostics["residual"] <= 1e-12
        assert dense.diagnostics["iterations"] == 1


def test_a_registered_linear_solver_takes_its_options_by_name():
    assert bilevel.solver_options("test_implicit_steepest_descent") == {
        "max_iter": 40,
        "scan_inner": False,
        "damping": 0.0,
        "hessian_batch": "last",
        "warm_start": False,
    }
    # it takes no initial guess, so it cannot be warm-started, and the error says why
    with pytest.raises(
        bilevel.SolverConfigError, match="warm_start=True needs a linear solver that takes x0"
    ):
        bilevel.make_solver("test_implicit_steepest_descent", warm_start=True)
    with jax.enable_x64(True):
        cf = closed_form.ridge(per_feature=True)
        exact = cf.hypergradient(cf.outer_init)
        errors = [
            _rel_error(
                _at_solution(cf, bilevel.make_solver("test_implicit_steepest_descent", max_iter=n)).hypergrad,
                exact,
            )
            for n in (2, 40)
        ]
        assert errors[1] <= 1e-8 < errors[0], errors


def test_a_registered_solver_class_is_built_by_name_and_runs_in_the_outer_loop():
    assert bilevel.solver_options("test_scaled_first_order") == {"scan_inner": False, "scale": 1.0}
    solver = bilevel.make_solver("test_scaled_first_order", scale=-2.0)
    assert solver == ScaledFirstOrder(scale=-2.0)
    with jax.enable_x64(True):
        cf = closed_form.quadratic()
        y = cf.inner_solution(cf.outer_init)
        state = bilevel.init(y, cf.outer_init, SGD, optax.sgd(1.0))
        step = jax.jit(bilevel.step, static_argnames=("problem", "solver", "inner_opt", "outer_opt"))
        new_state, diagnostics = step(
            state,
            cf.inner_batches(2),
            cf.outer_batch,
            problem=cf.problem,
            solver=solver,
            inner_opt=SGD,
            outer_opt=optax.sgd(1.0),
        )
        # The follower starts at its best response and stays there, so the first-order
        # hypergradient is F's direct partial Q^T y* + R x + e in closed form.
        batch, x = cf.outer_batch, cf.outer_init
        direct = batch["q"].T @ y + batch["r"] @ x + batch["e"]
        np.testing.assert_allclose(new_state.outer_params, x + 2.0 * direct, rtol=1e-12)
        np.testing.assert_allclose(diagnostics["hypergrad_norm"], 2.0 * jnp.linalg.norm(direct), rtol=1e-12)
        assert set(diagnostics) == set(bilevel.DIAGNOSTIC_KEYS) and not diagnostics["failed"]


def test_a_name_registers_once():
    with pytest.raises(bilevel.SolverConfigError, match="'test_scaled_first_order' is registered already"):
        bilevel.register_solver("test_scaled_first_order", ScaledFirstOrder)


def test_a_linear_solver_option_may_not_shadow_an_implicit_option():
    @dataclasses.dataclass(frozen=True)
    class Shadowing:
        damping: float = 0.0

    with pytest.raises(bilevel.SolverConfigError, match="Shadowing has option.s. damping of Implicit"):
        bilevel.implicit_with(Shadowing)
