"""DARTS / CAF: one unrolled step, its mixed second-order term by a central finite difference."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from bilevel import inner_loop, tree
from bilevel.errors import require_positive
from bilevel.solvers.base import Solver, SolverCall, SolverOutput, outer_terms, solver_output

PyTree = Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class FiniteDifference(Solver):
    """DARTS / CAF (``docs/solvers.md#finite-difference``), the last of the K steps being the
    "virtual" step.

    With ``w = inner_{K-1}``, ``w' = inner_K = w + U(g, s, w)`` (the inner optimiser's real last
    step on the last inner batch, momentum included) and ``v = dF/d inner`` at ``w'``:
    ``hypergrad = dF/d outer (w') + (d2 f / d outer d inner)(w) u`` with ``u = (dU/dg)^T v`` (the
    optimiser's exact VJP; ``u = -lr v`` for SGD with or without heavy-ball momentum), and the mixed
    term by a central difference ``[df/d outer (w + e u) - df/d outer (w - e u)] / (2 e)`` with
    ``e = eps_scale / ||u||``. For SGD this is DARTS' formula with ``eta = lr`` and
    ``eps = eps_scale / ||v||``: both perturb the inner parameters by ``eps_scale`` in norm.

    Arguments:
        eps_scale: the perturbation's norm in the inner parameters (> 0).

    Raises:
        SolverConfigError: ``eps_scale`` is not positive.
    """

    eps_scale: float = 0.01

    def __post_init__(self):
        require_positive("eps_scale", self.eps_scale)

    def solve(self, call: SolverCall) -> SolverOutput:
        k = inner_loop.num_steps(call.inner_batches)
        w, state = call.inner_params, call.inner_opt_state
        if k > 1:
            w, state, _ = self.inner_steps(
                call, w, state, inner_loop.batch_at(call.inner_batches, slice(0, k - 1))
            )
        last = inner_loop.batch_at(call.inner_batches, k - 1)
        (loss, aux), grad = jax.value_and_grad(call.problem.inner_value, has_aux=True)(
            w, call.outer_params, last
        )
        (inner, new_state), optimizer_vjp = jax.vjp(
            lambda g: inner_loop.apply_optimizer(call.inner_opt, g, state, w), grad
        )
        outer = outer_terms(call.problem, inner, call.outer_params, call.outer_batch)
        (u,) = optimizer_vjp((outer.grad_inner, _zero_cotangent(new_state)))
        u_norm = tree.norm(u)
        eps = self.eps_scale / jnp.where(u_norm > 0, u_norm, jnp.ones_like(u_norm))

        def grad_outer_at(sign):
            point = tree.axpy(sign * eps, u, w)
            return jax.grad(lambda o: call.problem.inner_value(point, o, last)[0])(call.outer_params)

        mixed = tree.scale(0.5 / eps, tree.sub(grad_outer_at(1.0), grad_outer_at(-1.0)))
        hypergrad = tree.add(outer.grad_outer, mixed)
        info = inner_loop.StepInfo(loss, tree.norm(grad), aux)
        return solver_output(inner, new_state, hypergrad, info, outer, iterations=1)


def _zero_cotangent(x: PyTree) -> PyTree:
    """Zero cotangents for ``x``: float0 for integer leaves (e.g. optimiser step counts)."""

    def zero(leaf):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            return jnp.zeros_like(leaf)
        return jnp.zeros(leaf.shape, jax.dtypes.float0)

    return jax.tree.map(zero, x)
