"""F2SA: the fully first-order penalty method, a second follower copy in the solver state.

Kwon, Kwon, Wright and Nowak, "A Fully First-Order Method for Stochastic Bilevel Optimization"
(ICML 2023). See ``docs/solvers.md#f2sa``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bilevel import inner_loop
from bilevel.errors import require_non_negative, require_positive
from bilevel.problem import Problem
from bilevel.solvers.base import Solver, SolverCall, SolverOutput, outer_report, solver_output

PyTree = Any


class PenaltyState(NamedTuple):
    """What :class:`F2SA` carries: the penalised follower copy ``y``, its optimiser state, and the
    outer steps taken (int32 scalar; the penalty's schedule reads it)."""

    penalized: PyTree
    opt_state: PyTree
    outer_steps: jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class F2SA(Solver):
    """The gradient in the leader of the penalised problem, with no second-order product.

    With ``f`` the inner and ``F`` the outer loss and ``lam`` the penalty, F2SA (Kwon et al. 2023)
    replaces the bi-level problem by ``min_x min_y F(y, x) + lam (f(y, x) - min_z f(z, x))``.
    The follower is ``z`` (its K steps on ``f`` as in every solver); the solver
    state carries a second copy ``y`` that takes K steps of the follower's optimiser, on the same
    inner batches, on ``f + F / lam`` (the same minimiser as ``F + lam f``, at ``f``'s gradient
    scale, so the follower's learning rate suits it). The hypergradient is

        dF/dx (y) + lam (df/dx (y) - df/dx (z))

    with ``f`` on the last inner batch and ``F`` on the outer batch. At the exact ``y`` and ``z``
    it differs from the true hypergradient by ``O(1 / lam)`` (the paper's bias bound), so the
    outer loop converges to within ``O(1 / lam)`` of the equilibrium; the paper lets ``lam`` grow
    with the outer step. Here ``lam_k = penalty + penalty_growth * k`` at outer step ``k``.

    Diagnostics: ``outer_loss`` is ``F`` at ``z`` as for every solver; ``residual`` is the
    value-function gap ``f(y) - f(z)`` on the last inner batch (the constraint the penalty
    weighs; ``O(1 / lam^2)`` at the exact ``y`` and ``z``, negative while ``z`` lags behind ``y``);
    ``iterations`` is 0.

    Arguments:
        penalty: ``lam`` at the first outer step (> 0).
        penalty_growth: added to ``lam`` at every outer step (>= 0; 0 keeps it fixed).
        scan_inner: as in :class:`~bilevel.Solver`, for both copies' steps.

    Raises:
        SolverConfigError: an option out of range.
    """

    penalty: float = 10.0
    penalty_growth: float = 0.0

    def __post_init__(self):
        require_positive("penalty", self.penalty)
        require_non_negative("penalty_growth", self.penalty_growth)

    def init_state(self, inner_params, outer_params, inner_opt) -> PenaltyState:
        """``y`` starts as a copy of the follower, with a fresh optimiser state."""
        penalized = jax.tree.map(jnp.copy, inner_params)
        return PenaltyState(penalized, inner_opt.init(penalized), jnp.zeros((), jnp.int32))

    def solve(self, call: SolverCall) -> SolverOutput:
        problem, outer, state = call.problem, call.outer_params, call.solver_state
        lam = self.penalty + self.penalty_growth * state.outer_steps.astype(float)
        inner, opt_state, info = self.inner_steps(
            call, call.inner_params, call.inner_opt_state, call.inner_batches
        )

        def penalized_loss(y, x, batch):
            f, aux = problem.inner_value(y, x, batch)
            big_f, _ = problem.outer_value(y, x, call.outer_batch)
            value = f + big_f / lam.astype(big_f.dtype)
            return (value, aux) if problem.has_aux else value

        penalized = call._replace(problem=Problem(penalized_loss, problem.outer_loss, problem.has_aux))
        y, y_opt_state, _ = self.inner_steps(penalized, state.penalized, state.opt_state, call.inner_batches)
        last = inner_loop.batch_at(call.inner_batches, -1)

        def lagrangian(x):
            big_f = problem.outer_value(y, x, call.outer_batch)[0]
            gap = problem.inner_value(y, x, last)[0] - problem.inner_value(inner, x, last)[0]
            return big_f + lam.astype(gap.dtype) * gap, gap

        (_, gap), hypergrad = jax.value_and_grad(lagrangian, has_aux=True)(outer)
        return solver_output(
            inner,
            opt_state,
            hypergrad,
            info,
            outer_report(problem, inner, outer, call.outer_batch),
            residual=gap,
            solver_state=PenaltyState(y, y_opt_state, state.outer_steps + 1),
        )
