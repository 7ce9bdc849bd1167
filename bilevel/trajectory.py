"""The outer loop with one solver over given batches, recorded step by step: convergence studies.

:func:`run` takes the steps of :func:`bilevel.step` (K follower steps, one hypergradient, one
leader update) with one solver, from a given state over a given sequence of batches, and records
every step's diagnostics, its wall time (the compiled step only: compilation and recording are
left out) and, against an optional reference solver evaluated at the same point, the cosine and
relative error of the running solver's hypergradient. Two variants that studies compare are
options: the follower carried from step to step (the default, as training does) or restarted at
every step from the state's first follower. See ``docs/solvers.md#studies``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax

from bilevel import tree
from bilevel.outer_loop import BilevelState, advance
from bilevel.problem import Problem
from bilevel.solvers import Solver

PyTree = Any
Observe = Callable[[BilevelState], dict[str, float]]
RECORDED = ("inner_loss", "outer_loss", "hypergrad_norm", "residual", "iterations", "failed")


def run(
    problem: Problem,
    solver: Solver,
    state: BilevelState,
    batches: Sequence[tuple[PyTree, PyTree]],
    *,
    inner_opt: optax.GradientTransformation,
    outer_opt: optax.GradientTransformation,
    reference: Solver | None = None,
    restart_follower: bool = False,
    observe: Observe | None = None,
) -> tuple[BilevelState, dict[str, np.ndarray]]:
    """``len(batches)`` outer steps with ``solver`` from ``state``, and what each one reported.

    The step is compiled and run once on the first batches before the loop (untimed, result
    discarded), so ``time_s`` holds no compilation.

    Arguments:
        problem: the bi-level problem.
        solver: the running solver; ``state.solver_state`` must be its state
            (``bilevel.init(..., solver=solver)``).
        state: where to start.
        batches: ``(inner_batches, outer_batch)`` per outer step; ``inner_batches`` leaves
            ``(K, ...)``.
        inner_opt, outer_opt: the follower's and the leader's optimisers.
        reference: a solver evaluated at every step's point (from a fresh solver state of its
            own) to compare the running solver's hypergradient with; its time is not counted.
        restart_follower: start every step's K follower steps from ``state``'s follower and its
            optimiser state (a cold follower) instead of where the last step left it.
        observe: called on the state before the first step and after every step (untimed, on
            the host), returning named numbers to record, e.g. a held-out score.

    Returns:
        ``(final state, record)``; ``record`` holds, per step (length ``len(batches)``), the
        diagnostics :data:`RECORDED` and with a ``reference`` ``cosine`` and ``rel_error`` to its
        hypergradient and the reference's own ``failed`` flag as ``reference_failed``; per state
        (length ``len(batches) + 1``, the first before any step) ``time_s`` (cumulative wall time
        of the compiled steps, 0 first) and ``observe``'s keys.
    """
    first = state

    def one_step(state: BilevelState, inner_batches: PyTree, outer_batch: PyTree):
        if restart_follower:
            state = state._replace(inner_params=first.inner_params, inner_opt_state=first.inner_opt_state)
        args = (state.inner_params, state.outer_params, inner_opt, state.inner_opt_state, inner_batches)
        out = solver(problem, *args, outer_batch, state.solver_state)
        report = {key: out.diagnostics[key] for key in RECORDED}
        if reference is not None:
            ref = reference(problem, *args, outer_batch)
            report["cosine"] = tree.cosine(out.hypergrad, ref.hypergrad)
            report["rel_error"] = tree.norm(tree.sub(out.hypergrad, ref.hypergrad)) / tree.norm(ref.hypergrad)
            report["reference_failed"] = ref.diagnostics["failed"]
        return advance(state, out, outer_opt), report

    compiled = jax.jit(one_step)
    jax.block_until_ready(compiled(state, *batches[0]))
    reports, observed, times = [], [observe(state) if observe else {}], [0.0]
    for inner_batches, outer_batch in batches:
        start = time.perf_counter()
        state, report = jax.block_until_ready(compiled(state, inner_batches, outer_batch))
        times.append(times[-1] + time.perf_counter() - start)
        reports.append(jax.device_get(report))
        observed.append(observe(state) if observe else {})
    record = {key: np.asarray([r[key] for r in reports]) for key in reports[0]}
    record["time_s"] = np.asarray(times)
    record.update({key: np.asarray([o[key] for o in observed]) for key in observed[0]})
    return state, record
