"""The single-level baseline: one weighted objective over both parameter sets."""

from __future__ import annotations

import dataclasses

import jax

from bilevel import inner_loop, tree
from bilevel.solvers.base import Solver, SolverCall, SolverOutput, solver_output


@dataclasses.dataclass(frozen=True, kw_only=True)
class Joint(Solver):
    """Single-level baseline (``docs/solvers.md#joint``).

    The follower takes its K steps on ``inner_loss`` as in every solver; the leader's gradient is
    ``d/d outer [inner_loss(inner_K, outer, last inner batch) + weight * outer_loss(inner_K, outer,
    outer_batch)]``, both partial derivatives at ``inner_K``. Fuse4Seg v1's eq. 6-7 is this sum
    with the fusion loss alone as ``outer_loss`` and ``weight`` its lambda; the fuse4seg trainer
    builds that problem when this solver is chosen.

    Arguments:
        weight: the outer loss's weight in the sum.
    """

    weight: float = 1.0

    def solve(self, call: SolverCall) -> SolverOutput:
        inner, state, info, outer = self.follow(call)
        last = inner_loop.batch_at(call.inner_batches, -1)
        g_inner_loss = jax.grad(lambda o: call.problem.inner_value(inner, o, last)[0])(call.outer_params)
        hypergrad = tree.axpy(self.weight, outer.grad_outer, g_inner_loss)
        return solver_output(inner, state, hypergrad, info, outer)
