"""Bi-level problems with closed-form inner solutions, hypergradients and equilibria.

The field's standard checks for hypergradient solvers (``docs/solvers.md#verification``). The data
are in the batches and the losses are module-level functions, so equal problems compare equal (one
jit compilation).
Closed forms are computed with ``jnp.linalg`` in the default float precision: enable float64
(``with jax.enable_x64(True):``) around construction *and* use for 1e-8 checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bilevel.outer_loop import hypergradient
from bilevel.problem import Problem

PyTree = Any


@dataclasses.dataclass(frozen=True)
class ClosedFormProblem:
    """A :class:`~bilevel.Problem` with its data and exact answers.

    Arguments:
        problem: the losses.
        inner_batch, outer_batch: one batch each; :meth:`inner_batches` tiles K copies.
        inner_init, outer_init: a starting point.
        inner_solution: ``outer -> inner*(outer)``, the follower's exact best response.
        hypergradient: ``outer -> d/d outer F(inner*(outer), outer)``, exact.
        inner_hessian: ``outer -> d2 f / d inner2`` at ``inner_solution(outer)``.
        equilibrium: the leader's optimum (Stackelberg equilibrium), where ``hypergradient`` is
            zero, or ``None``.
        first_order_point: where the direct partial ``dF/d outer`` at ``inner*(outer)`` is zero
            (where first-order leader updates stop), or ``None``.
    """

    problem: Problem
    inner_batch: PyTree
    outer_batch: PyTree
    inner_init: jax.Array
    outer_init: jax.Array
    inner_solution: Callable[[jax.Array], jax.Array]
    hypergradient: Callable[[jax.Array], jax.Array]
    inner_hessian: Callable[[jax.Array], jax.Array]
    equilibrium: jax.Array | None = None
    first_order_point: jax.Array | None = None

    def solve(self, solver, inner_opt, batches: PyTree, inner: PyTree | None = None):
        """``bilevel.hypergradient`` at ``outer_init`` with a fresh ``inner_opt`` state.

        Arguments:
            solver: any solver.
            inner_opt: the inner optimiser.
            batches: K inner batches (:meth:`inner_batches`).
            inner: the follower's start (default ``inner_init``).

        Returns:
            The solver's output on this problem.
        """
        inner = self.inner_init if inner is None else inner
        return hypergradient(
            self.problem,
            solver,
            inner,
            self.outer_init,
            inner_opt,
            inner_opt.init(inner),
            batches,
            self.outer_batch,
        )

    def inner_batches(self, k: int) -> PyTree:
        """K copies of ``inner_batch`` stacked on a new leading axis (full-batch inner steps)."""
        return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (k, *leaf.shape)), self.inner_batch)


def _ridge_inner(w, log_reg, batch):
    residual = batch["x"] @ w - batch["y"]
    return 0.5 * jnp.mean(residual**2) + 0.5 * jnp.sum(jnp.exp(log_reg) * w**2)


def _ridge_outer(w, log_reg, batch):
    return 0.5 * jnp.mean((batch["x"] @ w - batch["y"]) ** 2)


def ridge(
    n_train: int = 20,
    n_val: int = 15,
    n_features: int = 5,
    *,
    per_feature: bool = False,
    seed: int = 0,
) -> ClosedFormProblem:
    """Ridge regression with its L2 strength as the leader, ``reg = exp(log_reg)``.

    ``f(w, log_reg) = mean((X w - y)^2) / 2 + sum(exp(log_reg) * w^2) / 2`` on the training
    split, ``F(w) = mean((X_val w - y_val)^2) / 2`` on the validation split. ``log_reg`` is a
    scalar, or a ``(n_features,)`` vector with ``per_feature``. With ``A = X^T X / n + diag(reg)``:
    ``w* = A^-1 X^T y / n`` and ``dF/d log_reg = -reg * w* * A^-1 dF/dw`` (summed for a scalar).
    """
    rng = np.random.default_rng(seed)
    true_w = rng.normal(size=n_features)
    x, x_val = rng.normal(size=(n_train, n_features)), rng.normal(size=(n_val, n_features))
    train = {"x": jnp.asarray(x), "y": jnp.asarray(x @ true_w + 0.5 * rng.normal(size=n_train))}
    val = {"x": jnp.asarray(x_val), "y": jnp.asarray(x_val @ true_w + 0.5 * rng.normal(size=n_val))}
    outer_init = jnp.full((n_features,) if per_feature else (), -1.0, train["x"].dtype)

    def hessian(log_reg):
        reg = jnp.broadcast_to(jnp.exp(log_reg), (n_features,))
        return train["x"].T @ train["x"] / n_train + jnp.diag(reg)

    def solution(log_reg):
        return jnp.linalg.solve(hessian(log_reg), train["x"].T @ train["y"] / n_train)

    def hypergradient(log_reg):
        w = solution(log_reg)
        grad_w = val["x"].T @ (val["x"] @ w - val["y"]) / n_val
        per_coordinate = -jnp.exp(log_reg) * w * jnp.linalg.solve(hessian(log_reg), grad_w)
        return per_coordinate if per_feature else jnp.sum(per_coordinate)

    return ClosedFormProblem(
        Problem(_ridge_inner, _ridge_outer),
        train,
        val,
        jnp.zeros(n_features, train["x"].dtype),
        outer_init,
        solution,
        hypergradient,
        hessian,
    )


def _log_loss(w, batch):
    # Labels in {-1, +1}; log(1 + exp(-y x^T w)) written stably.
    return jnp.mean(jnp.logaddexp(0.0, -batch["y"] * (batch["x"] @ w)))


def _logistic_inner(w, log_reg, batch):
    return _log_loss(w, batch) + 0.5 * jnp.sum(jnp.exp(log_reg) * w**2)


def _logistic_outer(w, log_reg, batch):
    return _log_loss(w, batch)


def logistic(
    n_train: int = 24,
    n_val: int = 16,
    n_features: int = 4,
    *,
    newton_steps: int = 30,
    seed: int = 0,
) -> ClosedFormProblem:
    """Logistic regression with a per-feature L2 strength ``exp(log_reg)`` as the leader.

    Not quadratic in either variable, so it checks what quadratics cannot (non-constant Hessians).
    The "exact" answers are numerical: ``inner_solution`` runs ``newton_steps`` Newton steps from
    zero (quadratic convergence on this strongly convex loss; float64 reaches machine precision),
    and ``hypergradient = -reg * w* * H^-1 dF/dw`` with the dense Hessian ``H`` at ``w*``.
    """
    rng = np.random.default_rng(seed)
    true_w = rng.normal(size=n_features)

    def split(n):
        x = rng.normal(size=(n, n_features))
        y = np.where(x @ true_w + 0.5 * rng.normal(size=n) > 0, 1.0, -1.0)
        return {"x": jnp.asarray(x), "y": jnp.asarray(y)}

    train, val = split(n_train), split(n_val)

    def hessian_at(w, log_reg):
        return jax.hessian(_logistic_inner)(w, log_reg, train)

    @jax.jit
    def solution(log_reg):
        def newton(_, w):
            grad = jax.grad(_logistic_inner)(w, log_reg, train)
            return w - jnp.linalg.solve(hessian_at(w, log_reg), grad)

        return jax.lax.fori_loop(0, newton_steps, newton, jnp.zeros(n_features, log_reg.dtype))

    @jax.jit
    def hypergradient(log_reg):
        w = solution(log_reg)
        grad_w = jax.grad(_logistic_outer)(w, log_reg, val)
        return -jnp.exp(log_reg) * w * jnp.linalg.solve(hessian_at(w, log_reg), grad_w)

    return ClosedFormProblem(
        Problem(_logistic_inner, _logistic_outer),
        train,
        val,
        jnp.zeros(n_features, train["x"].dtype),
        jnp.full((n_features,), -2.0, train["x"].dtype),
        solution,
        hypergradient,
        lambda log_reg: hessian_at(solution(log_reg), log_reg),
    )


def _quadratic_inner(y, x, batch):
    return 0.5 * y @ batch["a"] @ y + y @ batch["b"] @ x + batch["c"] @ y


def _quadratic_outer(y, x, batch):
    return (
        0.5 * y @ batch["p"] @ y
        + y @ batch["q"] @ x
        + 0.5 * x @ batch["r"] @ x
        + batch["d"] @ y
        + batch["e"] @ x
    )


def _spd(rng: np.random.Generator, n: int, shift: float) -> np.ndarray:
    m = rng.normal(size=(n, n))
    return m @ m.T / n + shift * np.eye(n)


def quadratic(n_inner: int = 6, n_outer: int = 3, *, seed: int = 0) -> ClosedFormProblem:
    """A quadratic bi-level problem with inner and outer variables coupled in both levels.

    ``f(y, x) = y^T A y / 2 + y^T B x + c^T y`` (``A`` positive definite),
    ``F(y, x) = y^T P y / 2 + y^T Q x + x^T R x / 2 + d^T y + e^T x``. Then
    ``y*(x) = -A^-1 (B x + c)`` and
    ``dF/dx = Q^T y* + R x + e - B^T A^-1 (P y* + Q x + d)``, which is affine in ``x``; the
    leader's objective is convex (``P``, ``R`` positive definite), so ``equilibrium`` solves
    ``dF/dx = 0``, and ``first_order_point`` solves ``Q^T y*(x) + R x + e = 0``.
    """
    rng = np.random.default_rng(seed)
    inner = {
        "a": _spd(rng, n_inner, 0.5),
        "b": rng.normal(size=(n_inner, n_outer)),
        "c": rng.normal(size=n_inner),
    }
    outer = {
        "p": _spd(rng, n_inner, 0.5),
        "q": rng.normal(size=(n_inner, n_outer)),
        "r": _spd(rng, n_outer, 0.5),
        "d": rng.normal(size=n_inner),
        "e": rng.normal(size=n_outer),
    }
    return _quadratic_problem(inner, outer, rng.normal(size=n_inner), rng.normal(size=n_outer))


def stackelberg() -> ClosedFormProblem:
    """A two-by-two quadratic Stackelberg game (the :func:`quadratic` form) with hand-set numbers.

    Follower: ``f(y, x) = |y|^2 - y^T B x + c^T y`` (best response ``y* = (B x - c) / 2``).
    Leader: ``F(y, x) = |y - (1, -1)|^2 / 2 + |x|^2 / 2 + y^T Q x``. The leader's coupling term
    ``y^T Q x`` makes the first-order fixed point differ from the equilibrium.
    """
    inner = {
        "a": 2.0 * np.eye(2),
        "b": -np.array([[1.0, 0.5], [0.0, 1.0]]),
        "c": np.array([0.5, -0.5]),
    }
    target = np.array([1.0, -1.0])
    outer = {
        "p": np.eye(2),
        "q": np.array([[0.5, 0.0], [0.2, 0.3]]),
        "r": np.eye(2),
        "d": -target,
        "e": np.zeros(2),
    }
    return _quadratic_problem(inner, outer, np.zeros(2), np.array([2.0, -2.0]))


def _quadratic_problem(inner_np, outer_np, inner_init, outer_init) -> ClosedFormProblem:
    a, b, c = inner_np["a"], inner_np["b"], inner_np["c"]
    p, q, r, d, e = (outer_np[k] for k in "pqrde")
    # y*(x) = S x + s; dF/dx (direct partial) = G_fo x + h_fo; hypergradient = G x + h.
    big_s, small_s = -np.linalg.solve(a, b), -np.linalg.solve(a, c)
    g_fo, h_fo = q.T @ big_s + r, q.T @ small_s + e
    g = g_fo + big_s.T @ (p @ big_s + q)
    h = h_fo + big_s.T @ (p @ small_s + d)
    big_s_j, small_s_j, g_j, h_j = (jnp.asarray(m) for m in (big_s, small_s, g, h))
    return ClosedFormProblem(
        Problem(_quadratic_inner, _quadratic_outer),
        {k: jnp.asarray(v) for k, v in inner_np.items()},
        {k: jnp.asarray(v) for k, v in outer_np.items()},
        jnp.asarray(inner_init),
        jnp.asarray(outer_init),
        lambda x: big_s_j @ x + small_s_j,
        lambda x: g_j @ x + h_j,
        lambda x: jnp.asarray(a),
        jnp.asarray(np.linalg.solve(g, -h)),
        jnp.asarray(np.linalg.solve(g_fo, -h_fo)),
    )
