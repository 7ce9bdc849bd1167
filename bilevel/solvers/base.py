"""What every hypergradient solver shares: the call, the output, the diagnostics, the K inner steps.

``solver(problem, inner_params, outer_params, inner_opt, inner_opt_state, inner_batches,
outer_batch, solver_state=None) -> SolverOutput``. Every solver runs the follower's K optimiser steps (one per
leading-axis entry of ``inner_batches``, leader frozen) from ``inner_params`` to ``inner_K`` and
returns ``inner_K``, the optimiser state and the leader's hypergradient there; solvers differ only
in how they approximate ``d/d outer F(inner*(outer), outer)`` (``docs/solvers.md#the-solvers``).

A new solver is a frozen dataclass over :class:`Solver` that implements :meth:`Solver.solve` on
the packed :class:`SolverCall`, usually as :meth:`Solver.follow` (the K steps and the outer loss's
gradients at ``inner_K``) and then :func:`solver_output` (``docs/solvers.md#how-to-add-a-solver``).

Solver state: a solver may carry a pytree from one outer step to the next (a warm-started linear
solve's solution, a second copy of the follower). :meth:`Solver.init_state` makes the first one
(``()`` for the stateless solvers), the call takes it as ``solver_state`` and the output returns
the next one; :func:`bilevel.step` threads it through :class:`bilevel.BilevelState`
(``docs/solvers.md#solver-state``).

Diagnostics (:data:`DIAGNOSTIC_KEYS`, identical for all solvers, scalar arrays):
``inner_loss`` and ``inner_grad_norm`` (of the last inner step, before its update), ``outer_loss``
(at ``inner_K`` on ``outer_batch``), ``hypergrad_norm``, ``residual`` (relative residual of the
linear solve, 0 where none), ``iterations`` (solve iterations; unrolled: steps differentiated;
finite difference: 1; otherwise 0), ``failed`` (the solve did not converge or any output is
non-finite) and ``reason`` (why it failed, an int32 code indexing
:data:`bilevel.linear_solve.REASONS`: 0 ok, 1 iteration limit, 2 negative curvature, 3 non-finite,
4 residual above tol; 0 where there is no solve and everything is finite).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from bilevel import inner_loop, linear_solve, tree
from bilevel.problem import Problem

PyTree = Any

DIAGNOSTIC_KEYS = (
    "inner_loss",
    "inner_grad_norm",
    "outer_loss",
    "hypergrad_norm",
    "residual",
    "iterations",
    "failed",
    "reason",
)


class SolverOutput(NamedTuple):
    """What a solver returns.

    ``inner_params`` and ``inner_opt_state``: the follower after its K steps; ``hypergrad``: the
    leader's hypergradient (``outer_params``' structure); ``diagnostics``: ``{key: scalar array}``
    with the keys :data:`DIAGNOSTIC_KEYS`; ``inner_aux``: aux of the last inner step;
    ``outer_aux``: aux of the outer loss at ``inner_K`` (both ``None`` unless ``Problem.has_aux``);
    ``solver_state``: the state for the next outer step (``()`` for a stateless solver).
    """

    inner_params: PyTree
    inner_opt_state: PyTree
    hypergrad: PyTree
    diagnostics: dict[str, jax.Array]
    inner_aux: Any = None
    outer_aux: Any = None
    solver_state: PyTree = ()


class SolverCall(NamedTuple):
    """A solver call's arguments, packed once (the arguments of :meth:`Solver.__call__`)."""

    problem: Problem
    inner_params: PyTree
    outer_params: PyTree
    inner_opt: optax.GradientTransformation
    inner_opt_state: PyTree
    inner_batches: PyTree
    outer_batch: PyTree
    solver_state: PyTree = ()


class OuterTerms(NamedTuple):
    """The outer loss at a point: its value, aux, and gradients in the inner and outer parameters."""

    loss: jax.Array
    aux: Any
    grad_inner: PyTree
    grad_outer: PyTree


def outer_terms(problem: Problem, inner: PyTree, outer: PyTree, batch: PyTree) -> OuterTerms:
    """``F`` and both its partial gradients at ``(inner, outer)`` on ``batch``, in one pass."""
    (loss, aux), (g_inner, g_outer) = jax.value_and_grad(problem.outer_value, argnums=(0, 1), has_aux=True)(
        inner, outer, batch
    )
    return OuterTerms(loss, aux, g_inner, g_outer)


def outer_report(problem: Problem, inner: PyTree, outer: PyTree, batch: PyTree) -> OuterTerms:
    """``F`` and its aux at ``(inner, outer)`` without gradients (``None``): what
    :func:`solver_output` reports, for solvers that take ``F``'s gradients at another point."""
    loss, aux = problem.outer_value(inner, outer, batch)
    return OuterTerms(loss, aux, None, None)


def solver_output(
    inner: PyTree,
    opt_state: PyTree,
    hypergrad: PyTree,
    info: inner_loop.StepInfo,
    outer: OuterTerms,
    *,
    residual: jax.Array | float = 0.0,
    iterations: jax.Array | int = 0,
    converged: jax.Array | bool = True,
    solver_state: PyTree = (),
    reason: jax.Array | int | None = None,
) -> SolverOutput:
    """Assemble a :class:`SolverOutput` with the uniform diagnostics.

    Arguments:
        inner, opt_state: the follower after its K steps.
        hypergrad: the leader's hypergradient.
        info: the last inner step's report.
        outer: the outer loss at ``inner``; only ``loss`` and ``aux`` are read.
        residual: the linear solve's relative residual (0 where there is none).
        iterations: solve iterations, or steps differentiated.
        converged: the solve's verdict; ``failed`` is its negation or any non-finite output.
        solver_state: the state for the next outer step (``()`` for a stateless solver).
        reason: why the solve did not converge (:data:`bilevel.linear_solve.REASONS`); ``None``
            reads as the iteration limit. Any non-finite output makes it ``non-finite``.

    Returns:
        The output, diagnostics cast to the outer loss's dtype (``iterations`` and ``reason``
        int32, ``failed`` bool).
    """
    dtype = outer.loss.dtype
    residual = jnp.asarray(residual, dtype)
    finite = tree.all_finite((hypergrad, inner, residual, outer.loss, info.loss))
    code = jnp.where(finite, linear_solve.verdict(converged, reason), jnp.int32(linear_solve.NON_FINITE))
    diagnostics = {
        "inner_loss": jnp.asarray(info.loss, dtype),
        "inner_grad_norm": jnp.asarray(info.grad_norm, dtype),
        "outer_loss": outer.loss,
        "hypergrad_norm": jnp.asarray(tree.norm(hypergrad), dtype),
        "residual": residual,
        "iterations": jnp.asarray(iterations, jnp.int32),
        "failed": code != linear_solve.OK,
        "reason": code,
    }
    return SolverOutput(inner, opt_state, hypergrad, diagnostics, info.aux, outer.aux, solver_state)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Solver(abc.ABC):
    """Base of all solvers: frozen (hashable, so a static ``jit`` argument) and called alike.

    Arguments:
        scan_inner: run the K inner steps in a ``lax.scan`` (compile time independent of K)
            instead of a Python loop traced K times (faster with convolutions on XLA:CPU,
            ``docs/solvers.md#xlacpu-performance-facts``).
    """

    scan_inner: bool = False

    def __call__(
        self,
        problem: Problem,
        inner_params: PyTree,
        outer_params: PyTree,
        inner_opt: optax.GradientTransformation,
        inner_opt_state: PyTree,
        inner_batches: PyTree,
        outer_batch: PyTree,
        solver_state: PyTree | None = None,
    ) -> SolverOutput:
        """K inner steps, then the hypergradient at the new inner point.

        Arguments:
            problem: the bi-level problem.
            inner_params, outer_params: the follower's and the leader's parameters.
            inner_opt, inner_opt_state: the follower's optimiser and its state.
            inner_batches: K inner batches stacked on a leading axis (every leaf ``(K, ...)``).
            outer_batch: the batch of the outer loss.
            solver_state: the solver's state from the previous outer step; ``None``: a fresh one
                (:meth:`init_state`).

        Returns:
            The follower after K steps, the hypergradient, the diagnostics and the next state.
        """
        if solver_state is None:
            solver_state = self.init_state(inner_params, outer_params, inner_opt)
        return self.solve(
            SolverCall(
                problem,
                inner_params,
                outer_params,
                inner_opt,
                inner_opt_state,
                inner_batches,
                outer_batch,
                solver_state,
            )
        )

    def init_state(
        self, inner_params: PyTree, outer_params: PyTree, inner_opt: optax.GradientTransformation
    ) -> PyTree:
        """The solver's state before the first outer step; ``()``: the solver keeps none.

        Arguments:
            inner_params, outer_params: the follower's and the leader's initial parameters.
            inner_opt: the follower's optimiser (for a solver that steps its own follower copy).

        Returns:
            A pytree of arrays (its own buffers, never aliasing the arguments' leaves, so the
            outer state can be donated).
        """
        del inner_params, outer_params, inner_opt
        return ()

    @abc.abstractmethod
    def solve(self, call: SolverCall) -> SolverOutput:
        """The solver's work on the packed arguments (what :meth:`__call__` returns)."""

    def inner_steps(
        self,
        call: SolverCall,
        inner: PyTree,
        opt_state: PyTree,
        batches: PyTree,
        outer: PyTree | None = None,
    ) -> tuple[PyTree, PyTree, inner_loop.StepInfo]:
        """Plain inner steps over ``batches`` (leading axis) from ``(inner, opt_state)``.

        Arguments:
            call: the packed call (problem and inner optimiser).
            inner, opt_state: where to start.
            batches: the batches to step on, stacked on a leading axis.
            outer: the leader's parameters to hold fixed (default: ``call.outer_params``).

        Returns:
            The new inner parameters and optimiser state and the last step's report.
        """
        step = inner_loop.plain_step(call.problem, call.inner_opt)
        outer = call.outer_params if outer is None else outer
        return inner_loop.run(step, inner, opt_state, outer, batches, scan=self.scan_inner)

    def follow(self, call: SolverCall) -> tuple[PyTree, PyTree, inner_loop.StepInfo, OuterTerms]:
        """All K inner steps, then the outer loss and its gradients at ``inner_K``.

        Returns:
            ``(inner_K, opt_state_K, last step's report, outer terms at inner_K)``.
        """
        inner, state, info = self.inner_steps(
            call, call.inner_params, call.inner_opt_state, call.inner_batches
        )
        return inner, state, info, outer_terms(call.problem, inner, call.outer_params, call.outer_batch)
