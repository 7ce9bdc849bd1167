"""The first-order hypergradient: the outer loss's direct partial derivative only."""

from __future__ import annotations

import dataclasses

from bilevel.solvers.base import Solver, SolverCall, SolverOutput, solver_output


@dataclasses.dataclass(frozen=True, kw_only=True)
class FirstOrder(Solver):
    """``dF/d outer`` at ``inner_K``, the follower's response ignored (Fuse4Seg's choice;
    ``docs/solvers.md#first-order``)."""

    def solve(self, call: SolverCall) -> SolverOutput:
        inner, state, info, outer = self.follow(call)
        return solver_output(inner, state, outer.grad_outer, info, outer)
