"""The outer loop: K follower steps, one hypergradient, one leader update, as pure functions.

``step`` is jit-able with the problem, solver and optimisers static::

    step = jax.jit(bilevel.step, static_argnames=("problem", "solver", "inner_opt", "outer_opt"))

optax transformations are named tuples of functions, hence hashable by identity: build each one
once and reuse the object, or every new object triggers a new compilation. Nothing here is
device-specific, so inputs may carry any sharding.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from bilevel.problem import Problem
from bilevel.solvers import Solver, SolverOutput

PyTree = Any


class BilevelState(NamedTuple):
    """Everything the outer loop carries (a pytree); ``step`` counts outer steps (int32);
    ``solver_state`` is the solver's own (``()`` for a stateless solver)."""

    inner_params: PyTree
    outer_params: PyTree
    inner_opt_state: PyTree
    outer_opt_state: PyTree
    step: jax.Array
    solver_state: PyTree = ()


def init(
    inner_params: PyTree,
    outer_params: PyTree,
    inner_opt: optax.GradientTransformation,
    outer_opt: optax.GradientTransformation,
    solver: Solver | None = None,
) -> BilevelState:
    """Initial state: both optimisers initialised, ``step = 0``.

    Arguments:
        inner_params, outer_params: the follower's and the leader's initial parameters.
        inner_opt, outer_opt: their optimisers.
        solver: the solver :func:`step` will use; its :meth:`~bilevel.Solver.init_state` fills
            ``solver_state`` (``None``: ``()``, enough for every stateless solver).

    Returns:
        The state.
    """
    solver_state = () if solver is None else solver.init_state(inner_params, outer_params, inner_opt)
    return BilevelState(
        inner_params,
        outer_params,
        inner_opt.init(inner_params),
        outer_opt.init(outer_params),
        jnp.zeros((), jnp.int32),
        solver_state,
    )


def hypergradient(
    problem: Problem,
    solver: Solver,
    inner_params: PyTree,
    outer_params: PyTree,
    inner_opt: optax.GradientTransformation,
    inner_opt_state: PyTree,
    inner_batches: PyTree,
    outer_batch: PyTree,
    solver_state: PyTree | None = None,
) -> SolverOutput:
    """The solver's output at a given point; updates nothing (to compare solvers at one point).

    Arguments:
        problem: the bi-level problem.
        solver: any solver.
        inner_params, outer_params, inner_opt, inner_opt_state, inner_batches, outer_batch,
            solver_state: as in :meth:`bilevel.Solver.__call__`; ``inner_batches`` leaves have a
            leading axis K (the number of inner steps); ``solver_state=None`` is a fresh state.

    Returns:
        The solver's output.
    """
    return solver(
        problem,
        inner_params,
        outer_params,
        inner_opt,
        inner_opt_state,
        inner_batches,
        outer_batch,
        solver_state,
    )


def step(
    state: BilevelState,
    inner_batches: PyTree,
    outer_batch: PyTree,
    *,
    problem: Problem,
    solver: Solver,
    inner_opt: optax.GradientTransformation,
    outer_opt: optax.GradientTransformation,
) -> tuple[BilevelState, dict[str, jax.Array]]:
    """One outer step: the solver's K inner steps and hypergradient, then one ``outer_opt`` update.

    A ``failed`` step is still applied: the caller decides what to do with it.
    ``state.solver_state`` goes to the solver and its output's state is carried on.

    Arguments:
        state: the outer loop's state.
        inner_batches: K inner batches stacked on a leading axis.
        outer_batch: the batch of the outer loss.
        problem, solver, inner_opt, outer_opt: static (hashable) parts of the step.

    Returns:
        The new state and the solver's diagnostics (:data:`bilevel.DIAGNOSTIC_KEYS`); with
        ``problem.has_aux`` they also hold ``inner_aux`` and ``outer_aux``, the losses' aux outputs
        (the last inner step's, and the outer loss's at the new inner point).

    Raises:
        ValueError: ``state.solver_state`` does not have the structure of the solver's state (a
            state built without ``bilevel.init(..., solver=solver)``).
    """
    expected = jax.eval_shape(
        lambda i, o: solver.init_state(i, o, inner_opt), state.inner_params, state.outer_params
    )
    if jax.tree.structure(expected) != jax.tree.structure(state.solver_state):
        raise ValueError(
            f"state.solver_state has structure {jax.tree.structure(state.solver_state)} but solver "
            f"{type(solver).__name__} carries {jax.tree.structure(expected)}; build the state with "
            "bilevel.init(..., solver=solver)"
        )
    out = solver(
        problem,
        state.inner_params,
        state.outer_params,
        inner_opt,
        state.inner_opt_state,
        inner_batches,
        outer_batch,
        state.solver_state,
    )
    new_state = advance(state, out, outer_opt)
    if problem.has_aux:
        return new_state, {**out.diagnostics, "inner_aux": out.inner_aux, "outer_aux": out.outer_aux}
    return new_state, out.diagnostics


def advance(state: BilevelState, out: SolverOutput, outer_opt: optax.GradientTransformation) -> BilevelState:
    """The state after a solver's output: its follower and solver state, one ``outer_opt`` update
    of the leader along its hypergradient, ``step + 1`` (the second half of :func:`step`).

    Arguments:
        state: the state the solver was called at.
        out: the solver's output there.
        outer_opt: the leader's optimiser.

    Returns:
        The next state.
    """
    updates, outer_opt_state = outer_opt.update(out.hypergrad, state.outer_opt_state, state.outer_params)
    return BilevelState(
        out.inner_params,
        optax.apply_updates(state.outer_params, updates),
        out.inner_opt_state,
        outer_opt_state,
        state.step + 1,
        out.solver_state,
    )
