"""Implicit differentiation by iterating the inner optimiser's own linearised step map."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bilevel import curvature, linear_solve, tree
from bilevel.solvers.implicit import IFTSolver, MixedTerm


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImplicitFixedPoint(IFTSolver, linear_solve.IterationOptions):
    """The implicit hypergradient as the fixed point of the inner step map's transpose
    (``docs/solvers.md#fixed-point-on-the-step-map``).

    With ``Phi(inner, state, outer)`` one step of the inner optimiser at ``(inner_K, state_K)``
    and ``J`` its Jacobian in ``(inner, state)``, it solves ``w = w J + (dF/d inner, 0)`` by
    iteration and returns ``dF/d outer + w dPhi/d outer``. For SGD with learning rate ``lr`` this
    is the Neumann series with ``step_size = lr``; for momentum or Adam, their own linearised
    dynamics, so it contracts wherever the inner optimiser does. ``damping`` is the step map of
    ``f + damping / 2 ||inner - inner_K||^2``. ``residual`` is ``||w J + (b, 0) - w|| / ||b||``.

    Arguments:
        max_iter, solve_loop: as in :class:`~bilevel.linear_solve.IterationOptions`.
        tol: stop when an iteration changes ``w`` by at most ``tol ||b||``; ``failed`` also when
            the true residual exceeds it.
        damping, hessian_batch, scan_inner: as in :class:`~bilevel.solvers.implicit.IFTSolver`.

    Raises:
        SolverConfigError: an option out of range.
    """

    def __post_init__(self):
        IFTSolver.__post_init__(self)
        linear_solve.IterationOptions.__post_init__(self)

    def mixed_term(self, call, problem, batch, inner, opt_state, b) -> MixedTerm:
        step = curvature.differentiable_step(problem, call.inner_opt, self.damping)
        leaves, treedef = jax.tree.flatten(opt_state)
        floating = [jnp.issubdtype(leaf.dtype, jnp.inexact) for leaf in leaves]

        def step_map(i, float_leaves, o):
            it = iter(float_leaves)
            s = treedef.unflatten([next(it) if f else leaf for leaf, f in zip(leaves, floating, strict=True)])
            new_i, new_s, _ = step(i, s, o, batch)
            return new_i, [leaf for leaf, f in zip(jax.tree.leaves(new_s), floating, strict=True) if f]

        float_state = [leaf for leaf, f in zip(leaves, floating, strict=True) if f]
        _, step_vjp = jax.vjp(step_map, inner, float_state, call.outer_params)
        rhs = (b, tree.zeros_like(float_state))

        def transpose_jacobian(w):
            ct_inner, ct_state, _ = step_vjp(w)
            return ct_inner, ct_state

        result = linear_solve.fixed_point(
            transpose_jacobian, rhs, max_iter=self.max_iter, tol=self.tol, loop=self.solve_loop
        )
        ct_inner, ct_state, ct_outer = step_vjp(result.x)
        residual = linear_solve.relative_residual(
            tree.sub(tree.add((ct_inner, ct_state), rhs), result.x), tree.zeros_like(rhs), rhs
        )
        reason = linear_solve.held_to_tol(result.reason, residual, self.tol)
        # The step map's term enters with a plus sign; IFTSolver subtracts the correction.
        return MixedTerm(
            tree.scale(-1.0, ct_outer), residual, result.iterations, reason == linear_solve.OK, reason
        )
