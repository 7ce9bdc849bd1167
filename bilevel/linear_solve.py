"""Linear solves on pytrees, as functions and as the linear-solver objects :class:`~bilevel.Implicit` takes.

A *linear solver* is any hashable callable ``(matvec, b) -> SolveResult``: :class:`CG`,
:class:`Neumann` and :class:`JaxoptCG` here, or a user's own (a module-level function or a frozen
dataclass is hashable, so it can sit inside a solver that is a static ``jit`` argument). A linear
solver that has a ``tol`` attribute is also held to it on the true residual the implicit solver
computes after the solve (see ``docs/solvers.md#implicit-differentiation``).

The functions return a :class:`SolveResult`; none returns its initial guess silently, and each
says why it stopped short (:data:`REASONS`). Two loop
forms give the same iterates: ``loop="python"`` traces ``max_iter`` masked iterations (much faster
with convolutions on XLA:CPU, see ``docs/solvers.md#xlacpu-performance-facts``) and
``loop="while"`` is a ``lax.while_loop`` that stops early (compiles in time independent of
``max_iter``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from bilevel import tree
from bilevel.errors import require_one_of, require_positive

PyTree = Any
LinearMap = Callable[[PyTree], PyTree]
LOOPS = ("python", "while")

# Why a solve (or a whole hypergradient) is not to be trusted: the ``reason`` diagnostic's codes,
# indexing REASONS. 0 is success; a non-finite output overrides any other code.
OK, ITERATION_LIMIT, NEGATIVE_CURVATURE, NON_FINITE, RESIDUAL_ABOVE_TOL = range(5)
REASONS = ("ok", "iteration limit", "negative curvature", "non-finite", "residual above tol")

# The default relative residual: what float32 can meet. The true residual of a converged float32
# solve was measured at 1e-7 to 1.6e-6 on ridge problems of 5 to 2,000 parameters (condition ~4),
# and its rounding grows with the size and the conditioning, so 1e-6 flagged converged solves as
# failed. In float64 set a smaller ``tol`` (an option of every iterative solver).
DEFAULT_TOL = 1e-4


class SolveResult(NamedTuple):
    """What a linear solve returns: ``x``, the solution (``b``'s structure); ``iterations``, the
    iterations used (int32 scalar); ``converged``, the solver's own verdict (bool scalar);
    ``reason``, why it did not converge (int32 code of :data:`REASONS`, :data:`OK` where it did;
    ``None``, for a solver that does not say, reads as :data:`ITERATION_LIMIT` when not converged)."""

    x: PyTree
    iterations: jax.Array
    converged: jax.Array
    reason: jax.Array | None = None


def verdict(converged: jax.Array | bool, reason: jax.Array | int | None = None) -> jax.Array:
    """The int32 reason code of a solve: :data:`OK` where ``converged``, else ``reason``
    (:data:`ITERATION_LIMIT` where ``reason`` is ``None`` or :data:`OK`)."""
    given = jnp.asarray(ITERATION_LIMIT if reason is None else reason, jnp.int32)
    stopped = jnp.where(given == OK, jnp.int32(ITERATION_LIMIT), given)
    return jnp.where(jnp.asarray(converged), jnp.int32(OK), stopped)


def held_to_tol(reason: jax.Array, residual: jax.Array, tol: float | None) -> jax.Array:
    """``reason``, or :data:`RESIDUAL_ABOVE_TOL` where it is :data:`OK` but the true relative
    ``residual`` exceeds ``tol`` (a solver's own test can pass on a drifted recursive residual);
    ``tol=None`` checks nothing."""
    if tol is None:
        return reason
    return jnp.where((reason == OK) & (residual > tol), jnp.int32(RESIDUAL_ABOVE_TOL), reason)


class LinearSolver(Protocol):
    """``(matvec, b) -> SolveResult`` for ``A x = b``, ``A`` given by ``matvec(u) = A u``.

    A solver that also takes ``x0=`` (an initial guess, ``b``'s structure; ``None``: zero) can be
    warm-started (:class:`CG`, :class:`Neumann` and :class:`JaxoptCG` can).
    """

    def __call__(self, matvec: LinearMap, b: PyTree, /) -> SolveResult: ...


def iterate(body, state, done, max_iter: int, loop: str):
    """Run ``state = body(state)`` until ``done(state)`` or ``max_iter`` iterations.

    The loop of every iterative method in :mod:`bilevel` (linear solves, Lanczos), in either
    ``loop`` form (see the module docstring).

    Arguments:
        body: ``state -> state``.
        state: the initial state, a pytree.
        done: ``state -> bool scalar``; checked before each iteration.
        max_iter: the most iterations (static).
        loop: ``"python"`` or ``"while"``.

    Returns:
        ``(state, iterations)`` with ``iterations`` an int32 scalar.
    """
    if loop == "while":

        def cond(carry):
            state, k = carry
            return jnp.logical_and(k < max_iter, jnp.logical_not(done(state)))

        def step(carry):
            state, k = carry
            return body(state), k + 1

        return jax.lax.while_loop(cond, step, (state, jnp.zeros((), jnp.int32)))
    if loop != "python":
        raise ValueError(f"loop must be one of {LOOPS}, got {loop!r}")
    k = jnp.zeros((), jnp.int32)
    for _ in range(max_iter):
        stop = done(state)
        state = tree.select(stop, state, body(state))
        k = k + jnp.logical_not(stop).astype(jnp.int32)
    return state, k


def _relative(value: jax.Array, reference: jax.Array) -> jax.Array:
    """``value / reference``, defined as ``value`` when ``reference`` is zero."""
    return value / jnp.where(reference > 0, reference, jnp.ones_like(reference))


def cg(
    matvec: LinearMap,
    b: PyTree,
    *,
    max_iter: int,
    tol: float,
    loop: str = "python",
    x0: PyTree | None = None,
) -> SolveResult:
    """Conjugate gradient for ``A x = b`` with ``A`` symmetric positive definite, from ``x0``.

    Stops when the recursively updated residual satisfies ``||r|| <= tol * ||b||``. On an
    indefinite ``A`` (``p^T A p <= 0``) it stops and reports ``converged = False`` with reason
    :data:`NEGATIVE_CURVATURE`; out of iterations, :data:`ITERATION_LIMIT`.

    Arguments:
        matvec: ``u -> A u`` on pytrees with ``b``'s structure.
        b: the right-hand side.
        max_iter: the most iterations.
        tol: the relative residual to reach.
        loop: ``"python"`` or ``"while"`` (see the module docstring).
        x0: the initial guess (``None``: zero, which saves one ``matvec``).
    """
    b_norm = tree.norm(b)
    zero = jnp.zeros_like(b_norm)

    def body(state):
        x, r, p, rr, _ = state
        ap = matvec(p)
        curvature = tree.vdot(p, ap)
        alpha = rr / curvature
        x_new = tree.axpy(alpha, p, x)
        r_new = tree.axpy(-alpha, ap, r)
        rr_new = tree.vdot(r_new, r_new)
        p_new = tree.axpy(rr_new / rr, p, r_new)
        negative = curvature <= 0
        # Along a direction of non-positive curvature CG's step is meaningless: keep the iterate.
        return tree.select(negative, (x, r, p, rr), (x_new, r_new, p_new, rr_new)) + (negative,)

    def done(state):
        _, _, _, rr, negative = state
        return jnp.logical_or(negative, jnp.sqrt(rr) <= tol * b_norm)

    r0 = b if x0 is None else tree.sub(b, matvec(x0))
    x0 = tree.zeros_like(b) if x0 is None else x0
    init = (x0, r0, r0, tree.vdot(r0, r0), zero > 0)
    (x, _, _, rr, negative), k = iterate(body, init, done, max_iter, loop)
    converged = jnp.logical_and(jnp.logical_not(negative), jnp.sqrt(rr) <= tol * b_norm)
    reason = jnp.where(negative, jnp.int32(NEGATIVE_CURVATURE), jnp.int32(ITERATION_LIMIT))
    return SolveResult(x, k, converged, verdict(converged, reason))


def fixed_point(
    linear_map: LinearMap,
    b: PyTree,
    *,
    max_iter: int,
    tol: float,
    loop: str = "python",
    x0: PyTree | None = None,
) -> SolveResult:
    """Iterate ``x <- T x + b`` from ``x0`` (default 0: the Neumann series ``sum_j T^j b``).

    Converges when the spectral radius of ``T`` is below one. Stops when the step
    ``||x_new - x|| <= tol * ||b||``.

    Arguments:
        linear_map: ``x -> T x`` on pytrees with ``b``'s structure.
        b: the constant term.
        max_iter, tol, loop, x0: as in :func:`cg`.
    """
    b_norm = tree.norm(b)

    def body(state):
        x, _ = state
        x_new = tree.add(linear_map(x), b)
        return x_new, tree.norm(tree.sub(x_new, x))

    def done(state):
        return state[1] <= tol * b_norm

    start = tree.zeros_like(b) if x0 is None else x0
    (x, change), k = iterate(body, (start, b_norm), done, max_iter, loop)
    converged = done((x, change))
    return SolveResult(x, k, converged, verdict(converged))


def neumann(
    matvec: LinearMap,
    b: PyTree,
    *,
    step_size: float,
    max_iter: int,
    tol: float,
    loop: str = "python",
    x0: PyTree | None = None,
) -> SolveResult:
    """Truncated Neumann series for ``A x = b``: ``x = a sum_j (I - a A)^j b``, ``a = step_size``.

    Equivalent to Richardson's iteration; contracts when ``0 < a < 2 / lambda_max(A)`` and ``A``
    is positive definite. The stopping test ``||x_new - x|| <= tol ||a b||`` is
    ``||r|| <= tol ||b||`` on the residual ``r = b - A x``.

    Arguments:
        matvec, b, max_iter, tol, loop, x0: as in :func:`cg` (from ``x0`` the iteration is
            Richardson's from there).
        step_size: ``a``.
    """
    return fixed_point(
        lambda x: tree.axpy(-step_size, matvec(x), x),
        tree.scale(step_size, b),
        max_iter=max_iter,
        tol=tol,
        loop=loop,
        x0=x0,
    )


def jaxopt_cg(
    matvec: LinearMap, b: PyTree, *, max_iter: int, tol: float, x0: PyTree | None = None
) -> SolveResult:
    """``jaxopt.linear_solve.solve_cg`` (``jax.scipy``'s CG) from ``x0``; it reports no iteration count.

    ``iterations`` is ``max_iter`` (an upper bound) and ``converged`` is always true: the implicit
    solver judges convergence from the true residual and ``tol``, and curvature from the answer
    (``docs/solvers.md#why-a-hypergradient-failed``).
    """
    from jaxopt import linear_solve

    x = linear_solve.solve_cg(matvec, b, init=x0, tol=tol, maxiter=max_iter)
    return SolveResult(x, jnp.asarray(max_iter, jnp.int32), jnp.asarray(True))


def relative_residual(ax: PyTree, b: PyTree, reference: PyTree | None = None) -> jax.Array:
    """``||A x - b|| / ||reference||`` (``reference`` defaults to ``b``; no division by zero)."""
    return _relative(tree.norm(tree.sub(ax, b)), tree.norm(b if reference is None else reference))


@dataclasses.dataclass(frozen=True, kw_only=True)
class IterationOptions:
    """The options every iterative solve takes (a base of :class:`CG`, :class:`Neumann` and the
    fixed-point implicit solver).

    Arguments:
        max_iter: the most iterations (> 0).
        tol: the relative residual to reach (> 0).
        solve_loop: ``"python"`` or ``"while"`` (see the module docstring).

    Raises:
        SolverConfigError: an option out of range.
    """

    max_iter: int = 10
    tol: float = DEFAULT_TOL
    solve_loop: str = "python"

    def __post_init__(self):
        require_positive("max_iter", self.max_iter)
        require_positive("tol", self.tol)
        require_one_of("solve_loop", self.solve_loop, LOOPS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CG(IterationOptions):
    """Conjugate gradient (:func:`cg`) as a linear solver; options as :class:`IterationOptions`."""

    def __call__(self, matvec: LinearMap, b: PyTree, x0: PyTree | None = None) -> SolveResult:
        return cg(matvec, b, max_iter=self.max_iter, tol=self.tol, loop=self.solve_loop, x0=x0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Neumann(IterationOptions):
    """The truncated Neumann series (:func:`neumann`) as a linear solver.

    Arguments:
        step_size: the series' step ``a`` (> 0); contracting for ``a < 2 / lambda_max(A)``.
        max_iter, tol, solve_loop: as in :class:`IterationOptions`.

    Raises:
        SolverConfigError: an option out of range.
    """

    step_size: float = 0.01

    def __post_init__(self):
        super().__post_init__()
        require_positive("step_size", self.step_size)

    def __call__(self, matvec: LinearMap, b: PyTree, x0: PyTree | None = None) -> SolveResult:
        return neumann(
            matvec,
            b,
            step_size=self.step_size,
            max_iter=self.max_iter,
            tol=self.tol,
            loop=self.solve_loop,
            x0=x0,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class JaxoptCG:
    """jaxopt's conjugate gradient (:func:`jaxopt_cg`), an independent oracle for :class:`CG`.

    Arguments:
        max_iter, tol: as in :class:`IterationOptions`.

    Raises:
        SolverConfigError: an option out of range.
    """

    max_iter: int = 10
    tol: float = DEFAULT_TOL

    def __post_init__(self):
        require_positive("max_iter", self.max_iter)
        require_positive("tol", self.tol)

    def __call__(self, matvec: LinearMap, b: PyTree, x0: PyTree | None = None) -> SolveResult:
        return jaxopt_cg(matvec, b, max_iter=self.max_iter, tol=self.tol, x0=x0)
