"""bilevel.trust_region: minimisers of closed-form problems, a saddle it escapes, its stopping."""

import jax
import jax.numpy as jnp
import pytest

import bilevel
from bilevel import closed_form, trust_region


def _inner_loss(cf):
    return lambda inner, outer, batch: cf.problem.inner_value(inner, outer, batch)[0]


@pytest.mark.parametrize("make", [closed_form.ridge, closed_form.logistic])
def test_newton_reaches_the_known_minimiser_in_float64(make):
    with jax.enable_x64(True):
        cf = make()
        found = trust_region.minimise(
            _inner_loss(cf),
            cf.inner_init,
            cf.outer_init,
            cf.inner_batch,
            grad_tol=1e-12,
            max_steps=50,
            progress=lambda _: None,
        )
        exact = cf.inner_solution(cf.outer_init)
        assert found.converged and found.grad_norm <= 1e-12 and found.steps < 20
        assert float(jnp.linalg.norm(found.params - exact) / jnp.linalg.norm(exact)) < 1e-10


def test_from_near_a_saddle_it_follows_negative_curvature_to_a_minimum():
    def loss(p):
        return p["x"] ** 4 / 4 - p["x"] ** 2 / 2 + p["y"] ** 2 / 2 + 0.1 * p["x"] * p["y"]

    with jax.enable_x64(True):
        start = {"x": jnp.asarray(1e-9), "y": jnp.asarray(0.3)}
        cut = trust_region.minimise(loss, start, grad_tol=1e-12, max_steps=1, progress=lambda _: None)
        assert cut.steps == 1 and not cut.converged and cut.grad_norm > 1e-12
        found = trust_region.minimise(loss, start, grad_tol=1e-12, max_steps=50, progress=lambda _: None)
        x, y = float(found.params["x"]), float(found.params["y"])
        # a minimum: stationary (x^3 - x + 0.1 y = 0, y = -0.1 x) with |x| near 1, not the saddle at 0
        assert found.converged and abs(x) > 0.9 and abs(y + 0.1 * x) < 1e-12
        hessian = jax.hessian(lambda v: loss({"x": v[0], "y": v[1]}))(jnp.array([x, y]))
        assert float(jnp.linalg.eigvalsh(hessian)[0]) > 0


@pytest.mark.parametrize("option", ["grad_tol", "max_steps", "cg_iter", "radius"])
def test_options_must_be_positive(option):
    arguments = {"grad_tol": 1e-6, "max_steps": 5, "cg_iter": 5, "radius": 1.0, option: 0}
    with pytest.raises(bilevel.SolverConfigError, match=option):
        trust_region.minimise(lambda p: jnp.sum(p**2), jnp.ones(2), **arguments)
