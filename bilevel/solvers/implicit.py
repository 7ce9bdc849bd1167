"""Implicit differentiation: the hypergradient from the implicit function theorem at ``inner_K``.

:class:`IFTSolver` holds what every implicit solver shares (the follower's K steps, the curvature
problem chosen by ``hessian_batch``, damping, the diagnostics); :class:`Implicit` solves with the
inner Hessian through any linear solver object (:mod:`bilevel.linear_solve`), from zero or
warm-started from the previous outer step's solution.
See ``docs/solvers.md#implicit-differentiation`` and ``docs/solvers.md#warm-started-implicit``.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bilevel import curvature, inner_loop, linear_solve, tree
from bilevel.errors import SolverConfigError, require_non_negative, require_one_of
from bilevel.problem import Problem
from bilevel.solvers.base import Solver, SolverCall, SolverOutput, solver_output

PyTree = Any
HESSIAN_BATCHES = ("last", "mean")


class MixedTerm(NamedTuple):
    """The implicit correction ``mixed`` (subtracted from ``dF/d outer``) and how its solve went:
    ``residual`` (true relative residual), ``iterations``, ``converged``, ``reason`` (why not,
    a code of :data:`bilevel.linear_solve.REASONS`; ``None`` reads as the iteration limit) and
    ``state``: the solver state for the next outer step (``()`` for a stateless solver)."""

    mixed: PyTree
    residual: jax.Array
    iterations: jax.Array
    converged: jax.Array
    reason: jax.Array | None = None
    state: PyTree = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class IFTSolver(Solver):
    """``dF/d outer - mixed`` at ``inner_K``, ``mixed`` from a subclass's :meth:`mixed_term`.

    Exact only where ``inner_K`` is stationary and the curvature invertible, so ``residual`` and
    ``failed`` say how well the solve went (``inner_grad_norm`` how stationary the point is).

    Arguments:
        damping: add ``damping * I`` to the inner Hessian (>= 0).
        hessian_batch: ``"last"`` (curvature of the inner loss on the last inner batch) or
            ``"mean"`` (of the mean inner loss over all K batches: K times the cost per product).

    Raises:
        SolverConfigError: an option out of range.
    """

    damping: float = 0.0
    hessian_batch: str = "last"

    def __post_init__(self):
        require_one_of("hessian_batch", self.hessian_batch, HESSIAN_BATCHES)
        require_non_negative("damping", self.damping)

    def solve(self, call: SolverCall) -> SolverOutput:
        inner, state, info, outer = self.follow(call)
        if self.hessian_batch == "last":
            problem, batch = call.problem, inner_loop.batch_at(call.inner_batches, -1)
        else:
            problem = Problem(_mean_inner_loss(call.problem), call.problem.outer_loss, call.problem.has_aux)
            batch = call.inner_batches
        term = self.mixed_term(call, problem, batch, inner, state, outer.grad_inner)
        hypergrad = tree.sub(outer.grad_outer, term.mixed)
        return solver_output(
            inner,
            state,
            hypergrad,
            info,
            outer,
            residual=term.residual,
            iterations=term.iterations,
            converged=term.converged,
            solver_state=term.state,
            reason=term.reason,
        )

    @abc.abstractmethod
    def mixed_term(
        self, call: SolverCall, problem: Problem, batch: PyTree, inner: PyTree, opt_state: PyTree, b: PyTree
    ) -> MixedTerm:
        """The correction at ``(inner, opt_state)`` (the follower after K steps).

        Arguments:
            call: the packed call (leader's parameters, inner optimiser, solver state).
            problem, batch: whose inner loss defines the curvature (``hessian_batch``).
            inner, opt_state: the follower after its K steps.
            b: ``dF/d inner`` at ``inner``.
        """


@dataclasses.dataclass(frozen=True, kw_only=True)
class Implicit(IFTSolver):
    """``dF/d outer - M (H + damping I)^-1 dF/d inner`` with ``H`` and ``M`` the inner loss's
    Hessian and mixed second derivative at ``inner_K``.

    ``residual`` is the true relative residual ``||(H + damping I) x - b|| / ||b||``, computed in
    the same forward-over-reverse pass as ``M x``; ``failed`` when the linear solver reports no
    convergence, when it has a ``tol`` and the true residual exceeds it, or when the answer has
    ``x^T (H + damping I) x <= 0`` (the matrix is not positive definite, as every built-in linear
    solver assumes); ``reason`` says which (``docs/solvers.md#why-a-hypergradient-failed``).

    With ``warm_start`` the solver state is the last solution ``x`` (zero before the first step)
    and each solve starts there, so a few iterations per outer step refine one solution carried
    along the outer loop (warm-started CG or Neumann, the linear-system part of AmIGO: Arbel and
    Mairal, "Amortized implicit differentiation for stochastic bilevel optimization", 2022).
    Iterated to convergence it gives the cold solve's answer; with a fixed ``max_iter`` it is
    exact only in the limit of the outer loop, and ``failed`` marks the steps whose residual is
    still above ``tol``.

    Arguments:
        linear_solver: ``(matvec, b) -> SolveResult``, hashable: :class:`~bilevel.CG`,
            :class:`~bilevel.Neumann`, :class:`~bilevel.JaxoptCG` or a user's module-level function
            or frozen dataclass (``docs/solvers.md#how-to-add-a-linear-solver``).
        warm_start: start each solve from the previous outer step's solution (the linear solver
            must take ``x0=``, as the built-in ones do).
        damping, hessian_batch, scan_inner: as in :class:`IFTSolver` and :class:`~bilevel.Solver`.

    Raises:
        SolverConfigError: an option out of range, or ``warm_start`` with a linear solver that
            takes no ``x0``.
    """

    linear_solver: linear_solve.LinearSolver = linear_solve.CG()
    warm_start: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.warm_start and "x0" not in inspect.signature(self.linear_solver).parameters:
            raise SolverConfigError(
                f"solver option warm_start=True needs a linear solver that takes x0=, and "
                f"{self.linear_solver!r} does not"
            )

    def init_state(self, inner_params, outer_params, inner_opt):
        """Zeros shaped like the follower (the first solve's start) with ``warm_start``, else ``()``."""
        return tree.zeros_like(inner_params) if self.warm_start else ()

    def mixed_term(self, call, problem, batch, inner, opt_state, b) -> MixedTerm:
        outer = call.outer_params

        def loss(i, o):
            return problem.inner_value(i, o, batch)[0]

        def matvec(u):
            return tree.axpy(self.damping, u, curvature.hvp(loss, inner, outer, u))

        solve = (
            functools.partial(self.linear_solver, x0=call.solver_state)
            if self.warm_start
            else self.linear_solver
        )
        result = solve(matvec, b)
        _, hx, mixed = curvature.gradient_products(loss, inner, outer, result.x)
        ax = tree.axpy(self.damping, result.x, hx)
        residual = linear_solve.relative_residual(ax, b)
        # CG's own guard sees only its search directions; this one sees any solver's answer, at
        # no cost (A x is at hand), and overrides an iteration limit it explains.
        indefinite = jnp.logical_and(tree.vdot(result.x, ax) <= 0, tree.norm(result.x) > 0)
        reason = linear_solve.verdict(result.converged, result.reason)
        reason = jnp.where(indefinite, jnp.int32(linear_solve.NEGATIVE_CURVATURE), reason)
        reason = linear_solve.held_to_tol(reason, residual, getattr(self.linear_solver, "tol", None))
        state = result.x if self.warm_start else ()
        return MixedTerm(mixed, residual, result.iterations, reason == linear_solve.OK, reason, state)


def _mean_inner_loss(problem: Problem):
    """``(inner, outer, batches) -> (mean_k inner_loss(inner, outer, batches[k]), None)``."""

    def loss(inner, outer, batches):
        k = inner_loop.num_steps(batches)
        values = [problem.inner_value(inner, outer, inner_loop.batch_at(batches, t))[0] for t in range(k)]
        total = sum(values[1:], values[0]) / k
        return (total, None) if problem.has_aux else total

    return loss
