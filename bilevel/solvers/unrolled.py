"""Unrolled differentiation: the exact derivative of the K-step map, in reverse or forward mode."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from bilevel import curvature, inner_loop, schedule, tree
from bilevel.errors import SolverConfigError, require_positive
from bilevel.solvers.base import OuterTerms, Solver, SolverCall, SolverOutput, solver_output


@dataclasses.dataclass(frozen=True, kw_only=True)
class Unrolled(Solver):
    """Reverse mode through the inner steps: the exact gradient of the K-step map
    (``docs/solvers.md#unrolled``).

    What the reverse pass stores: each differentiated step's reverse rule is built from
    forward-over-reverse products (:func:`bilevel.curvature.differentiable_step`) and keeps as
    residuals only the step's inputs (inner parameters, optimiser state, batch) and its inner
    gradient, never the inner loss's activations, which the backward pass recomputes once the
    step's cotangent exists. Without ``remat`` that is ``T`` such residual sets for ``T``
    differentiated steps; with ``remat`` only the inner states at segment boundaries are kept
    through the forward pass (about ``sqrt(T)``) and one segment's residuals are recomputed at a
    time in the backward pass, about ``2 sqrt(T)`` sets at most. The values are the same either
    way (to rounding: the two programs are compiled differently). Compiled temporaries are then
    one step's activations plus the residual sets: on a small conv problem, K = 20 needs 1.2x the
    temporaries of K = 1 (``docs/solvers.md#rematerialisation``).

    Arguments:
        truncate: differentiate only the last ``truncate`` steps (> 0; the earlier ones run with
            the leader's influence cut); ``None`` or a value >= K differentiates all K.
        remat: checkpoint segments of ``ceil(sqrt(T))`` steps (recomputed in the backward pass).
        store_linearization: keep each differentiated step's linearisation from the forward pass
            so the backward pass does not recompute the step's gradient (about one gradient per
            step less work; each step's activations are kept, with ``remat`` one segment's).
        reuse_outer_work: compute each step's work on the leader and the batch alone (the
            leader's forward pass) once, in the forward sweep, and keep what the reverse pass
            reads of it instead of recomputing it there
            (:func:`bilevel.curvature.differentiable_step`): ``T`` leader forwards less work,
            memory that grows with ``T`` by those kept results (with ``remat``, one segment's),
            and less time only where that work is a large share of a step
            (``docs/solvers.md#unrolled``). XLA's common-subexpression elimination does the
            sharing; a test counts the FLOPs saved.

    Raises:
        SolverConfigError: ``truncate`` is not positive, or ``reuse_outer_work`` is combined with
            ``store_linearization`` (which recomputes nothing).
    """

    truncate: int | None = None
    remat: bool = False
    store_linearization: bool = False
    reuse_outer_work: bool = False

    def __post_init__(self):
        require_positive("truncate", self.truncate, allow_none=True)
        if self.reuse_outer_work and self.store_linearization:
            raise SolverConfigError(
                "unrolled: reuse_outer_work has no effect with store_linearization, which keeps "
                "each step's whole linearisation and recomputes nothing; choose one"
            )

    def solve(self, call: SolverCall) -> SolverOutput:
        k = inner_loop.num_steps(call.inner_batches)
        t = k if self.truncate is None else min(self.truncate, k)
        inner, state = call.inner_params, call.inner_opt_state
        if t < k:
            inner, state, _ = self.inner_steps(
                call, inner, state, inner_loop.batch_at(call.inner_batches, slice(0, k - t))
            )
        tail = inner_loop.batch_at(call.inner_batches, slice(k - t, k))
        step = curvature.differentiable_step(
            call.problem,
            call.inner_opt,
            store_linearization=self.store_linearization,
            reuse_outer_work=self.reuse_outer_work,
        )

        def rollout(outer):
            i, s, info = self._differentiable_run(step, inner, state, outer, tail, t)
            loss, aux = call.problem.outer_value(i, outer, call.outer_batch)
            return loss, (i, s, info, aux)

        (loss, (i, s, info, aux)), hypergrad = jax.value_and_grad(rollout, has_aux=True)(call.outer_params)
        outer = OuterTerms(loss, aux, None, None)
        return solver_output(i, s, hypergrad, info, outer, iterations=t)

    def _differentiable_run(self, step, inner, state, outer, batches, t):
        if not self.remat:
            return inner_loop.run(step, inner, state, outer, batches, scan=self.scan_inner)
        segment = math.ceil(math.sqrt(t))

        def run_segment(i, s, o, b):
            return inner_loop.run(step, i, s, o, b, scan=self.scan_inner)

        run_segment = schedule.checkpoint(run_segment)
        info = None
        for start in range(0, t, segment):
            batches_seg = inner_loop.batch_at(batches, slice(start, min(start + segment, t)))
            inner, state, info = run_segment(inner, state, outer, batches_seg)
        return inner, state, info


@dataclasses.dataclass(frozen=True, kw_only=True)
class UnrolledForward(Solver):
    """The K-step map's exact gradient by forward mode (``docs/solvers.md#unrolled``).

    One JVP of the inner loop per leader coordinate, vectorised with ``vmap``: nothing is stored
    for a reverse pass, and the cost grows with the number of leader parameters, so it suits a
    few hyper-parameters (loss weights, regularisers). Vectorised over all D coordinates at once,
    the program holds D copies of every inner-loop activation (66 GiB of temporaries on a small
    conv leader); ``directions_per_pass`` bounds that to so many copies, the passes running one
    after another (``lax.map``).

    Arguments:
        directions_per_pass: leader coordinates per vectorised pass (> 0); ``None``: all at once.

    Raises:
        SolverConfigError: ``directions_per_pass`` is not positive.
    """

    directions_per_pass: int | None = None

    def __post_init__(self):
        require_positive("directions_per_pass", self.directions_per_pass, allow_none=True)

    def solve(self, call: SolverCall) -> SolverOutput:
        inner, state, info, outer = self.follow(call)
        flat_outer, unravel = ravel_pytree(call.outer_params)

        def directional(direction):
            def inner_k(flat):
                return self.inner_steps(
                    call, call.inner_params, call.inner_opt_state, call.inner_batches, unravel(flat)
                )[0]

            tangent = jax.jvp(inner_k, (flat_outer,), (direction,))[1]
            return tree.vdot(outer.grad_inner, tangent)

        basis = jnp.eye(flat_outer.size, dtype=flat_outer.dtype)
        if self.directions_per_pass is None:
            indirect = jax.vmap(directional)(basis)
        else:
            indirect = jax.lax.map(directional, basis, batch_size=self.directions_per_pass)
        hypergrad = tree.add(outer.grad_outer, unravel(indirect))
        k = inner_loop.num_steps(call.inner_batches)
        return solver_output(inner, state, hypergrad, info, outer, iterations=k)
