"""BOME: first-order descent on the value-function reformulation, a leader's follower copy in the
solver state.

Liu, Ye, Wright, Stone and Liu, "BOME! Bilevel Optimization Made Easy: A Simple First-Order
Approach" (NeurIPS 2022). See ``docs/solvers.md#bome``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from bilevel import inner_loop, tree
from bilevel.errors import require_positive
from bilevel.solvers.base import Solver, SolverCall, SolverOutput, outer_report, solver_output

PyTree = Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class BOME(Solver):
    """One step on ``(x, y)`` for ``min F(y, x)`` subject to ``q(y, x) = f(y, x) - min_z f(z, x) <= 0``.

    The leader ``x`` and a copy ``y`` of the follower's variable (the solver state) descend
    together; the follower ``z`` (its K steps on ``f`` as in every solver) stands in for the value
    function, ``min_z f(z, x) ~ f(z_K, x)``, held constant in the gradients. With ``F`` on the
    outer batch and ``f`` on the last inner batch, and gradients in both ``x`` and ``y``,

        q = f(y, x) - f(z_K, x),   lam = max(0, (eta ||grad q||^2 - <grad F, grad q>) / ||grad q||^2)
        direction = grad F + lam grad q

    the smallest correction of ``grad F`` that still decreases ``q`` at rate ``eta ||grad q||^2``
    (the paper's control-barrier form of the multiplier). The ``x`` part of ``direction`` is the
    hypergradient (the leader's optimiser applies it); ``y`` takes ``y - step_size * direction_y``.
    Where ``y = z_K = inner*(x)`` both ``q`` and its gradient vanish (the constraint is
    degenerate on its feasible set) and the direction is ``grad F``, which is not zero at the
    equilibrium: discrete steps circle it at a distance proportional to the step sizes (0.48 x
    the step on the quadratic Stackelberg game, ``docs/solvers.md#bome``). Where the paper starts
    the inner loop is a choice: here ``z`` continues from the last outer step, as every solver's
    follower does.

    Diagnostics: ``outer_loss`` is ``F`` at ``z_K`` as for every solver; ``residual`` is the
    value-function gap ``q = f(y) - f(z_K)`` on the last inner batch (near 0 once ``y`` tracks the
    best response; negative while ``z`` lags behind ``y``); ``iterations`` is 0.

    Arguments:
        step_size: ``y``'s step (> 0); the leader's is its optimiser's.
        eta: the rate ``eta`` at which ``q`` must decrease (> 0).
        scan_inner: as in :class:`~bilevel.Solver`.

    Raises:
        SolverConfigError: an option out of range.
    """

    step_size: float = 0.01
    eta: float = 0.5

    def __post_init__(self):
        require_positive("step_size", self.step_size)
        require_positive("eta", self.eta)

    def init_state(self, inner_params, outer_params, inner_opt):
        """``y`` starts as a copy of the follower."""
        return jax.tree.map(jnp.copy, inner_params)

    def solve(self, call: SolverCall) -> SolverOutput:
        problem, outer, y = call.problem, call.outer_params, call.solver_state
        inner, opt_state, info = self.inner_steps(
            call, call.inner_params, call.inner_opt_state, call.inner_batches
        )
        last = inner_loop.batch_at(call.inner_batches, -1)

        def gap(y, x):
            return problem.inner_value(y, x, last)[0] - problem.inner_value(inner, x, last)[0]

        grad_f = jax.grad(lambda y, x: problem.outer_value(y, x, call.outer_batch)[0], argnums=(0, 1))(
            y, outer
        )
        q, grad_q = jax.value_and_grad(gap, argnums=(0, 1))(y, outer)
        q_norm2 = tree.vdot(grad_q, grad_q)
        safe = jnp.where(q_norm2 > 0, q_norm2, jnp.ones_like(q_norm2))
        lam = jnp.where(q_norm2 > 0, jnp.maximum(0.0, self.eta - tree.vdot(grad_f, grad_q) / safe), 0.0)
        direction_y, hypergrad = tree.axpy(lam, grad_q, grad_f)
        return solver_output(
            inner,
            opt_state,
            hypergrad,
            info,
            outer_report(problem, inner, outer, call.outer_batch),
            residual=q,
            solver_state=tree.axpy(-self.step_size, direction_y, y),
        )
