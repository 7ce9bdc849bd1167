"""Hypergradient solvers: frozen dataclasses, all called the same way.

``solver(problem, inner_params, outer_params, inner_opt, inner_opt_state, inner_batches,
outer_batch) -> SolverOutput``. Every solver first runs the follower's K optimiser steps (one per
leading-axis entry of ``inner_batches``, leader frozen) from ``inner_params`` to ``inner_K`` and
returns ``inner_K``, the optimiser state and the leader's hypergradient there. The solvers differ
only in how they approximate ``d/d outer F(inner*(outer), outer)``:

- :class:`FirstOrder`: ``dF/d outer`` at ``inner_K`` (the direct partial).
- :class:`Unrolled`: reverse mode through the last ``truncate`` of the K steps.
- :class:`UnrolledForward`: the same derivative in forward mode (cost grows with ``outer``).
- :class:`Implicit`: implicit function theorem at ``inner_K``, a solve with ``H + damping I``.
- :class:`FiniteDifference`: DARTS / CAF, the last step unrolled, its mixed term by central
  difference.
- :class:`Joint`: ``d/d outer [f + weight F]``, the single-level baseline.

Diagnostics (:data:`DIAGNOSTIC_KEYS`, identical for all solvers, scalar arrays):
``inner_loss`` and ``inner_grad_norm`` (of the last inner step, before its update), ``outer_loss``
(at ``inner_K`` on ``outer_batch``), ``hypergrad_norm``, ``residual`` (relative residual of the
linear solve, 0 where none), ``iterations`` (solve iterations; unrolled: steps differentiated;
finite difference: 1; otherwise 0) and ``failed`` (the solve missed ``tol`` or any output is
non-finite).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from bilevel import curvature, inner_loop, linear_solve, tree
from bilevel.errors import SolverConfigError
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
)


class SolverOutput(NamedTuple):
    """What a solver returns.

    - ``inner_params``, ``inner_opt_state``: the follower after its K steps.
    - ``hypergrad``: the leader's hypergradient (``outer_params``' structure).
    - ``diagnostics``: ``{key: scalar array}`` with the keys :data:`DIAGNOSTIC_KEYS`.
    - ``inner_aux``: aux of the last inner step; ``outer_aux``: aux of the outer loss at
      ``inner_K`` (both ``None`` unless ``Problem.has_aux``).
    """

    inner_params: PyTree
    inner_opt_state: PyTree
    hypergrad: PyTree
    diagnostics: dict[str, jax.Array]
    inner_aux: Any = None
    outer_aux: Any = None


class _Call(NamedTuple):
    """A solver call's arguments, packed once."""

    problem: Problem
    inner_params: PyTree
    outer_params: PyTree
    inner_opt: optax.GradientTransformation
    inner_opt_state: PyTree
    inner_batches: PyTree
    outer_batch: PyTree


class _OuterTerms(NamedTuple):
    loss: jax.Array
    aux: Any
    grad_inner: PyTree
    grad_outer: PyTree


def _outer_terms(problem: Problem, inner: PyTree, outer: PyTree, batch: PyTree) -> _OuterTerms:
    (loss, aux), (g_inner, g_outer) = jax.value_and_grad(problem.outer_value, argnums=(0, 1), has_aux=True)(
        inner, outer, batch
    )
    return _OuterTerms(loss, aux, g_inner, g_outer)


def _output(
    inner: PyTree,
    opt_state: PyTree,
    hypergrad: PyTree,
    info: inner_loop.StepInfo,
    outer: _OuterTerms,
    *,
    residual: jax.Array | float = 0.0,
    iterations: jax.Array | int = 0,
    converged: jax.Array | bool = True,
) -> SolverOutput:
    dtype = outer.loss.dtype
    residual = jnp.asarray(residual, dtype)
    finite = tree.all_finite((hypergrad, inner, residual, outer.loss, info.loss))
    diagnostics = {
        "inner_loss": jnp.asarray(info.loss, dtype),
        "inner_grad_norm": jnp.asarray(info.grad_norm, dtype),
        "outer_loss": outer.loss,
        "hypergrad_norm": jnp.asarray(tree.norm(hypergrad), dtype),
        "residual": residual,
        "iterations": jnp.asarray(iterations, jnp.int32),
        "failed": jnp.logical_not(jnp.logical_and(jnp.asarray(converged), finite)),
    }
    return SolverOutput(inner, opt_state, hypergrad, diagnostics, info.aux, outer.aux)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Solver(abc.ABC):
    """Base of all solvers.

    **Arguments**

    - ``scan_inner``: run the K inner steps in a ``lax.scan`` (compile time independent of K)
      instead of a Python loop traced K times (faster with convolutions on XLA:CPU).
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
    ) -> SolverOutput:
        """K inner steps, then the hypergradient at the new inner point (see the module doc)."""
        return self._solve(
            _Call(
                problem,
                inner_params,
                outer_params,
                inner_opt,
                inner_opt_state,
                inner_batches,
                outer_batch,
            )
        )

    @abc.abstractmethod
    def _solve(self, c: _Call) -> SolverOutput:
        """The solver's work on the packed arguments."""

    def _inner_steps(self, c: _Call, inner, opt_state, batches, outer=None):
        """Plain inner steps over ``batches`` with the leader at ``outer`` (default: its own)."""
        step = inner_loop.plain_step(c.problem, c.inner_opt)
        outer = c.outer_params if outer is None else outer
        return inner_loop.run(step, inner, opt_state, outer, batches, scan=self.scan_inner)

    def _follow(self, c: _Call):
        """All K inner steps, then the outer loss and its gradients at ``inner_K``."""
        inner, state, info = self._inner_steps(c, c.inner_params, c.inner_opt_state, c.inner_batches)
        return inner, state, info, _outer_terms(c.problem, inner, c.outer_params, c.outer_batch)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FirstOrder(Solver):
    """The direct partial ``dF/d outer`` at ``inner_K`` (what the Fuse4Seg paper uses)."""

    def _solve(self, c: _Call) -> SolverOutput:
        inner, state, info, outer = self._follow(c)
        return _output(inner, state, outer.grad_outer, info, outer)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Joint(Solver):
    """Single-level baseline (Fuse4Seg v1 eq. 6-7).

    The follower takes its K steps on ``inner_loss`` as in every solver; the leader's gradient is
    ``d/d outer [inner_loss(inner_K, outer, last inner batch) + weight * outer_loss(inner_K, outer,
    outer_batch)]``, both partial derivatives at ``inner_K``.
    """

    weight: float = 1.0

    def _solve(self, c: _Call) -> SolverOutput:
        inner, state, info, outer = self._follow(c)
        last = inner_loop.batch_at(c.inner_batches, -1)
        g_inner_loss = jax.grad(lambda o: c.problem.inner_value(inner, o, last)[0])(c.outer_params)
        hypergrad = tree.axpy(self.weight, outer.grad_outer, g_inner_loss)
        return _output(inner, state, hypergrad, info, outer)


def _check_positive(name: str, value: int | float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise SolverConfigError(f"solver option {name} must be positive, got {value!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Unrolled(Solver):
    """Reverse mode through the inner steps: the exact gradient of the K-step map.

    **Arguments**

    - ``truncate``: differentiate only the last ``truncate`` steps (the earlier ones run with the
      leader's influence cut); ``None`` or a value >= K differentiates all K.
    - ``remat``: checkpoint segments of ``ceil(sqrt(T))`` steps (``jax.checkpoint``): only segment
      boundaries are saved, about ``2 sqrt(T)`` stored inner states instead of ``T``; same
      values.

    Each step's reverse rule is built from forward-over-reverse products
    (:func:`bilevel.curvature.differentiable_step`), never reverse-over-reverse, and saves only
    the step's inputs and gradient (no activations), so even without ``remat`` the stored
    residuals are ``T`` copies of the parameters and optimiser state. (On XLA:CPU the compiled
    temporaries still grow by about one step's activations per step with or without ``remat``;
    see ``benchmarks/hypergrad_cost.py``.)
    """

    truncate: int | None = None
    remat: bool = False

    def __post_init__(self):
        _check_positive("truncate", self.truncate, allow_none=True)

    def _solve(self, c: _Call) -> SolverOutput:
        k = inner_loop.num_steps(c.inner_batches)
        t = k if self.truncate is None else min(self.truncate, k)
        inner, state = c.inner_params, c.inner_opt_state
        if t < k:
            inner, state, _ = self._inner_steps(
                c, inner, state, inner_loop.batch_at(c.inner_batches, slice(0, k - t))
            )
        tail = inner_loop.batch_at(c.inner_batches, slice(k - t, k))
        step = curvature.differentiable_step(c.problem, c.inner_opt)

        def rollout(outer):
            i, s, info = self._differentiable_run(step, inner, state, outer, tail, t)
            loss, aux = c.problem.outer_value(i, outer, c.outer_batch)
            return loss, (i, s, info, aux)

        (loss, (i, s, info, aux)), hypergrad = jax.value_and_grad(rollout, has_aux=True)(c.outer_params)
        outer = _OuterTerms(loss, aux, None, None)
        return _output(i, s, hypergrad, info, outer, iterations=t)

    def _differentiable_run(self, step, inner, state, outer, batches, t):
        if not self.remat:
            return inner_loop.run(step, inner, state, outer, batches, scan=self.scan_inner)
        segment = math.ceil(math.sqrt(t))

        def run_segment(i, s, o, b):
            return inner_loop.run(step, i, s, o, b, scan=self.scan_inner)

        run_segment = jax.checkpoint(run_segment)
        info = None
        for start in range(0, t, segment):
            batches_seg = inner_loop.batch_at(batches, slice(start, min(start + segment, t)))
            inner, state, info = run_segment(inner, state, outer, batches_seg)
        return inner, state, info


@dataclasses.dataclass(frozen=True, kw_only=True)
class UnrolledForward(Solver):
    """The K-step map's exact gradient by forward mode: one JVP of the inner loop per leader
    coordinate (vectorised with ``vmap``). Memory does not grow with K; cost grows with the number
    of leader parameters, so it suits hyper-parameters (loss weights, regularisers)."""

    def _solve(self, c: _Call) -> SolverOutput:
        inner, state, info, outer = self._follow(c)
        flat_outer, unravel = ravel_pytree(c.outer_params)

        def directional(direction):
            def inner_k(flat):
                return self._inner_steps(
                    c, c.inner_params, c.inner_opt_state, c.inner_batches, unravel(flat)
                )[0]

            tangent = jax.jvp(inner_k, (flat_outer,), (direction,))[1]
            return tree.vdot(outer.grad_inner, tangent)

        basis = jnp.eye(flat_outer.size, dtype=flat_outer.dtype)
        indirect = jax.vmap(directional)(basis)
        hypergrad = tree.add(outer.grad_outer, unravel(indirect))
        return _output(inner, state, hypergrad, info, outer, iterations=inner_loop.num_steps(c.inner_batches))


@dataclasses.dataclass(frozen=True, kw_only=True)
class FiniteDifference(Solver):
    """DARTS / CAF (REFERENCE.md section 4), the last of the K steps being the "virtual" step.

    With ``w = inner_{K-1}``, ``w' = inner_K = w + U(g, s, w)`` (the inner optimiser's real last
    step on the last inner batch, momentum included) and ``v = dF/d inner`` at ``w'``:
    ``hypergrad = dF/d outer (w') + (d2 f / d outer d inner)(w) u`` with ``u = (dU/dg)^T v`` (the
    optimiser's exact VJP; ``u = -lr v`` for SGD with or without heavy-ball momentum), and the mixed
    term by a central difference ``[df/d outer (w + e u) - df/d outer (w - e u)] / (2 e)`` with
    ``e = eps_scale / ||u||``. For SGD this is DARTS' formula with ``eta = lr`` and
    ``eps = eps_scale / ||v||``: both perturb the inner parameters by ``eps_scale`` in norm.
    """

    eps_scale: float = 0.01

    def __post_init__(self):
        _check_positive("eps_scale", self.eps_scale)

    def _solve(self, c: _Call) -> SolverOutput:
        k = inner_loop.num_steps(c.inner_batches)
        w, state = c.inner_params, c.inner_opt_state
        if k > 1:
            w, state, _ = self._inner_steps(
                c, w, state, inner_loop.batch_at(c.inner_batches, slice(0, k - 1))
            )
        last = inner_loop.batch_at(c.inner_batches, k - 1)
        (loss, aux), grad = jax.value_and_grad(c.problem.inner_value, has_aux=True)(w, c.outer_params, last)
        (inner, new_state), optimizer_vjp = jax.vjp(
            lambda g: inner_loop.apply_optimizer(c.inner_opt, g, state, w), grad
        )
        outer = _outer_terms(c.problem, inner, c.outer_params, c.outer_batch)
        (u,) = optimizer_vjp((outer.grad_inner, _zero_cotangent(new_state)))
        u_norm = tree.norm(u)
        eps = self.eps_scale / jnp.where(u_norm > 0, u_norm, jnp.ones_like(u_norm))

        def grad_outer_at(sign):
            point = tree.axpy(sign * eps, u, w)
            return jax.grad(lambda o: c.problem.inner_value(point, o, last)[0])(c.outer_params)

        mixed = tree.scale(0.5 / eps, tree.sub(grad_outer_at(1.0), grad_outer_at(-1.0)))
        hypergrad = tree.add(outer.grad_outer, mixed)
        info = inner_loop.StepInfo(loss, tree.norm(grad), aux)
        return _output(inner, new_state, hypergrad, info, outer, iterations=1)


def _zero_cotangent(x: PyTree) -> PyTree:
    """Zero cotangents for ``x``: float0 for integer leaves (e.g. optimiser step counts)."""

    def zero(leaf):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            return jnp.zeros_like(leaf)
        return jnp.zeros(leaf.shape, jax.dtypes.float0)

    return jax.tree.map(zero, x)


LINEAR_SOLVERS = ("cg", "neumann", "fixed_point", "jaxopt_cg")
HESSIAN_BATCHES = ("last", "mean")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Implicit(Solver):
    """Implicit function theorem at ``inner_K``: ``dF/d outer - M (H + damping I)^-1 dF/d inner``.

    ``H`` and ``M`` are the inner loss's Hessian and mixed second derivative at ``inner_K``; exact
    only where ``inner_K`` is stationary and ``H`` invertible, so ``residual`` and ``failed`` say
    how well the solve went (``inner_grad_norm`` how stationary the point is).

    **Arguments**

    - ``linear_solver``: ``"cg"`` (conjugate gradient), ``"neumann"`` (Neumann series / Richardson
      with ``step_size``), ``"fixed_point"`` (iterate the transpose of the inner optimiser's own
      step map at ``(inner_K, state_K)``: for SGD the Neumann series with ``step_size = lr``, for
      momentum or Adam their own linearised dynamics) or ``"jaxopt_cg"`` (jaxopt's CG, an oracle).
    - ``max_iter``, ``tol``: stop at ``max_iter`` iterations or at relative residual ``tol``.
    - ``damping``: solve with ``H + damping I`` (fixed point: the step map of ``f + damping / 2
      ||inner - inner_K||^2``).
    - ``step_size``: Neumann's step, contracting for ``0 < step_size < 2 / lambda_max``.
    - ``hessian_batch``: ``"last"`` (the last inner batch) or ``"mean"`` (the mean inner loss over
      all K batches: K times the cost per product).
    - ``solve_loop``: ``"python"`` (``max_iter`` traced iterations) or ``"while"``
      (``lax.while_loop``, early exit, compile time independent of ``max_iter``).

    ``residual`` is the true relative residual ``||(H + damping I) x - b|| / ||b||`` (fixed point:
    ``||T x + b - x|| / ||b||``), computed in the same pass as the mixed product.
    """

    linear_solver: str = "cg"
    max_iter: int = 10
    tol: float = 1e-6
    damping: float = 0.0
    step_size: float = 0.01
    hessian_batch: str = "last"
    solve_loop: str = "python"

    def __post_init__(self):
        for name, value, valid in (
            ("linear_solver", self.linear_solver, LINEAR_SOLVERS),
            ("hessian_batch", self.hessian_batch, HESSIAN_BATCHES),
            ("solve_loop", self.solve_loop, linear_solve.LOOPS),
        ):
            if value not in valid:
                raise SolverConfigError(f"solver option {name}={value!r} is not one of {', '.join(valid)}")
        _check_positive("max_iter", self.max_iter)
        _check_positive("tol", self.tol)
        _check_positive("step_size", self.step_size)
        if self.damping < 0:
            raise SolverConfigError(f"solver option damping must be >= 0, got {self.damping}")

    def _solve(self, c: _Call) -> SolverOutput:
        inner, state, info, outer = self._follow(c)
        curvature_problem, batch = self._curvature_problem(c.problem, c.inner_batches)
        if self.linear_solver == "fixed_point":
            mixed, residual, result = self._fixed_point(
                curvature_problem,
                c.inner_opt,
                inner,
                state,
                c.outer_params,
                batch,
                outer.grad_inner,
            )
        else:

            def loss(i, o):
                return curvature_problem.inner_value(i, o, batch)[0]

            mixed, residual, result = self._linear_solve(loss, inner, c.outer_params, outer.grad_inner)
        converged = jnp.logical_and(result.converged, residual <= self.tol)
        hypergrad = tree.sub(outer.grad_outer, mixed)
        return _output(
            inner,
            state,
            hypergrad,
            info,
            outer,
            residual=residual,
            iterations=result.iterations,
            converged=converged,
        )

    def _curvature_problem(self, problem, inner_batches):
        """The problem and batch whose inner loss defines ``H`` and ``M`` (``hessian_batch``)."""
        if self.hessian_batch == "last":
            return problem, inner_loop.batch_at(inner_batches, -1)
        mean = Problem(_mean_inner_loss(problem), problem.outer_loss, problem.has_aux)
        return mean, inner_batches

    def _linear_solve(self, loss, inner, outer, b):
        def matvec(u):
            return tree.axpy(self.damping, u, curvature.hvp(loss, inner, outer, u))

        options = {"max_iter": self.max_iter, "tol": self.tol}
        if self.linear_solver == "cg":
            result = linear_solve.cg(matvec, b, loop=self.solve_loop, **options)
        elif self.linear_solver == "neumann":
            result = linear_solve.neumann(
                matvec, b, step_size=self.step_size, loop=self.solve_loop, **options
            )
        else:
            result = linear_solve.jaxopt_cg(matvec, b, **options)
        _, hx, mixed = curvature.gradient_products(loss, inner, outer, result.x)
        residual = linear_solve.relative_residual(tree.axpy(self.damping, result.x, hx), b)
        return mixed, residual, result

    def _fixed_point(self, problem, inner_opt, inner, state, outer, batch, b):
        """Solve ``w = w J + (b, 0)`` with ``J`` the inner step map's Jacobian in (inner, state).

        The leader's term is ``-(w dPhi/d outer)``: the sign makes it fit ``grad_outer - mixed``.
        """
        step = curvature.differentiable_step(problem, inner_opt, self.damping)
        leaves, treedef = jax.tree.flatten(state)
        floating = [jnp.issubdtype(leaf.dtype, jnp.inexact) for leaf in leaves]

        def step_map(i, float_leaves, o):
            it = iter(float_leaves)
            s = treedef.unflatten([next(it) if f else leaf for leaf, f in zip(leaves, floating, strict=True)])
            new_i, new_s, _ = step(i, s, o, batch)
            return new_i, [leaf for leaf, f in zip(jax.tree.leaves(new_s), floating, strict=True) if f]

        float_state = [leaf for leaf, f in zip(leaves, floating, strict=True) if f]
        _, step_vjp = jax.vjp(step_map, inner, float_state, outer)
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
        return tree.scale(-1.0, ct_outer), residual, result


def _mean_inner_loss(problem: Problem):
    """``(inner, outer, batches) -> (mean_k inner_loss(inner, outer, batches[k]), None)``."""

    def loss(inner, outer, batches):
        k = inner_loop.num_steps(batches)
        values = [problem.inner_value(inner, outer, inner_loop.batch_at(batches, t))[0] for t in range(k)]
        total = sum(values[1:], values[0]) / k
        return (total, None) if problem.has_aux else total

    return loss
