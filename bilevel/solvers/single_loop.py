"""SOBA: one step on the follower, one on the linear system's solution, one hypergradient.

Dagréou, Ablin, Vaiter and Moreau, "A framework for bilevel optimization that enables stochastic
and global variance reduction algorithms" (NeurIPS 2022). See ``docs/solvers.md#soba``.
"""

from __future__ import annotations

import dataclasses

from bilevel import curvature, inner_loop, linear_solve, tree
from bilevel.errors import require_positive
from bilevel.solvers.base import Solver, SolverCall, SolverOutput, solver_output


@dataclasses.dataclass(frozen=True, kw_only=True)
class SOBA(Solver):
    """The implicit hypergradient with the solution ``v`` of ``H v = dF/d inner`` carried in the
    solver state and moved by one step per outer step, never solved.

    One outer step (Dagréou et al. 2022, SOBA's three directions, in this library's sign
    convention where ``v`` approximates ``H^-1 dF/d inner``): the follower's K steps (SOBA takes
    K = 1), then at ``inner_K``, with ``H`` and ``M`` the inner loss's Hessian and mixed second
    derivative on the last inner batch and ``F``'s gradients on the outer batch,

        hypergrad = dF/d outer - M v,        v <- v - step_size (H v - dF/d inner)

    both from the ``v`` the step started with (the paper's simultaneous updates). ``H v`` and
    ``M v`` come from one forward-over-reverse pass, so a step costs a first-order step plus one
    Hessian-vector product. With decreasing step sizes and independent batches the iterates
    converge in expectation to a stationary point; with constant ones, to a neighbourhood whose
    size grows with the batches' noise and the step sizes. ``v`` starts at zero.

    Diagnostics: ``residual`` is ``||H v - dF/d inner|| / ||dF/d inner||`` at the step's ``v``
    (the linear system's relative residual, for free from the same pass); ``iterations`` is 1.

    Arguments:
        step_size: ``rho``, the step on ``v`` (> 0); ``v`` contracts for ``rho < 2 / lambda_max(H)``.
        scan_inner: as in :class:`~bilevel.Solver`.

    Raises:
        SolverConfigError: ``step_size`` is not positive.
    """

    step_size: float = 0.01

    def __post_init__(self):
        require_positive("step_size", self.step_size)

    def init_state(self, inner_params, outer_params, inner_opt):
        """``v = 0``, shaped like the follower."""
        return tree.zeros_like(inner_params)

    def solve(self, call: SolverCall) -> SolverOutput:
        inner, opt_state, info, outer = self.follow(call)
        last = inner_loop.batch_at(call.inner_batches, -1)

        def loss(i, o):
            return call.problem.inner_value(i, o, last)[0]

        v = call.solver_state
        _, hv, mv = curvature.gradient_products(loss, inner, call.outer_params, v)
        return solver_output(
            inner,
            opt_state,
            tree.sub(outer.grad_outer, mv),
            info,
            outer,
            residual=linear_solve.relative_residual(hv, outer.grad_inner),
            iterations=1,
            solver_state=tree.axpy(-self.step_size, tree.sub(hv, outer.grad_inner), v),
        )
