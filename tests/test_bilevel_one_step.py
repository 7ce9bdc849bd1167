"""First-order, joint and finite-difference (DARTS) hypergradients against their formulas."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bilevel
from bilevel import closed_form, inner_loop


def _inner_k(cf, inner_opt, batches):
    step = inner_loop.plain_step(cf.problem, inner_opt)
    return inner_loop.run(step, cf.inner_init, inner_opt.init(cf.inner_init), cf.outer_init, batches)[0]


def test_first_order_is_the_direct_partial_exactly():
    with jax.enable_x64(True):
        cf, inner_opt = closed_form.quadratic(), optax.sgd(0.1, momentum=0.5)
        batches = cf.inner_batches(3)
        out = cf.solve(bilevel.FirstOrder(), inner_opt, batches)
        inner = _inner_k(cf, inner_opt, batches)
        direct = jax.grad(cf.problem.outer_loss, argnums=1)(inner, cf.outer_init, cf.outer_batch)
        np.testing.assert_array_equal(out.hypergrad, direct)
        np.testing.assert_array_equal(out.inner_params, inner)


def test_joint_is_the_partial_of_the_weighted_sum():
    with jax.enable_x64(True):
        cf, inner_opt = closed_form.quadratic(), optax.sgd(0.1)
        batches = cf.inner_batches(2)
        out = cf.solve(bilevel.make_solver("joint", weight=0.25), inner_opt, batches)
        inner = _inner_k(cf, inner_opt, batches)

        def weighted(outer):
            return cf.problem.inner_loss(inner, outer, cf.inner_batch) + 0.25 * (
                cf.problem.outer_loss(inner, outer, cf.outer_batch)
            )

        np.testing.assert_allclose(out.hypergrad, jax.grad(weighted)(cf.outer_init), rtol=1e-14)


def _loss_weights():
    """CAF-shaped search: the leader weighs two training losses, the follower fits logistic weights.

    ``f(w, beta) = sum_j exp(beta_j) * logloss(w; group j) + |w|^2 / 20``, ``F = logloss(w; val)``:
    ``df/dbeta`` is not polynomial in ``w``, so central differences have a truncation error.
    """
    data = closed_form.logistic(n_train=24)

    def log_loss(w, x, y):
        return jnp.mean(jnp.logaddexp(0.0, -y * (x @ w)))

    def inner(w, beta, batch):
        halves = [log_loss(w, batch["x"][i::2], batch["y"][i::2]) for i in (0, 1)]
        return jnp.exp(beta) @ jnp.stack(halves) + 0.05 * w @ w

    def outer(w, beta, batch):
        return log_loss(w, batch["x"], batch["y"])

    return dataclasses.replace(data, problem=bilevel.Problem(inner, outer), outer_init=jnp.array([0.3, -0.4]))


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_finite_difference_matches_the_analytic_darts_expression(momentum):
    """DARTS: dF/dbeta(w') - lr * d2f/(dbeta dw)(w) v, v = dF/dw(w'), momentum included.

    At ``eps_scale = 1e-3``; the default 0.01 is 1.6e-5 off on this problem (the ``eps^2``
    truncation error measured by the next test).
    """
    with jax.enable_x64(True):
        cf, lr = _loss_weights(), 0.5
        inner_opt = optax.sgd(lr, momentum=momentum)
        batches = cf.inner_batches(3)
        out = cf.solve(bilevel.FiniteDifference(eps_scale=1e-3), inner_opt, batches)
        w = _inner_k(cf, inner_opt, inner_loop.batch_at(batches, slice(0, 2)))
        w_next = _inner_k(cf, inner_opt, batches)
        grad_w, grad_beta = jax.grad(cf.problem.outer_loss, argnums=(0, 1))(
            w_next, cf.outer_init, cf.outer_batch
        )
        mixed = jax.jacobian(jax.grad(cf.problem.inner_loss, argnums=1))(w, cf.outer_init, cf.inner_batch)
        expected = grad_beta - lr * mixed @ grad_w
        np.testing.assert_allclose(out.hypergrad, expected, rtol=1e-5)
        np.testing.assert_allclose(out.inner_params, w_next, rtol=1e-14)
        # The same one-step derivative without finite differences: unrolled, truncated to 1.
        truncated = cf.solve(bilevel.Unrolled(truncate=1), inner_opt, batches)
        np.testing.assert_allclose(truncated.hypergrad, expected, rtol=1e-12)


def test_finite_difference_error_shrinks_with_eps():
    with jax.enable_x64(True):
        cf, inner_opt = _loss_weights(), optax.sgd(0.5)
        batches = cf.inner_batches(2)
        exact = cf.solve(bilevel.Unrolled(truncate=1), inner_opt, batches).hypergrad
        errors = [
            float(
                jnp.linalg.norm(
                    cf.solve(bilevel.FiniteDifference(eps_scale=eps), inner_opt, batches).hypergrad - exact
                )
            )
            for eps in (1.0, 0.3, 0.1)
        ]
        # Central differences: error ~ eps^2.
        assert errors[0] > errors[1] > errors[2] > 0, errors
        assert errors[2] < errors[0] / 30, errors
