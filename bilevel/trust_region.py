"""Minimisation to a small gradient norm by trust-region Newton-CG on Hessian-vector products.

Each step approximately minimises the quadratic model ``m(p) = f + g^T p + p^T H p / 2`` inside
the ball ``||p|| <= radius`` by conjugate gradient (Steihaug's truncated CG: it stops at the
ball's boundary, or follows a direction of non-positive curvature to it, so an indefinite ``H``
gives a step that still decreases the model), then compares the loss's actual decrease with the
model's predicted one: the step is taken where the ratio exceeds :data:`ACCEPT`, and the radius
shrinks where the model was poor and grows where it was good and the step reached the boundary.
CG is stopped at the relative residual ``min(0.5, sqrt(||g||))`` (an inexact Newton step that
still converges superlinearly near a minimum with positive definite ``H``). Products are
forward-over-reverse (:func:`bilevel.curvature.hvp`); nothing of size ``n^2`` is formed. See
``docs/solvers.md#converging-the-follower``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from bilevel import curvature
from bilevel.errors import require_positive

PyTree = Any

# A step is taken where the loss fell by more than this fraction of the model's prediction
# (Nocedal and Wright's eta), and the radius shrinks below SHRINK and grows above GROW.
ACCEPT, SHRINK, GROW = 0.1, 0.25, 0.75
# A predicted decrease below this many rounding units of |f| is within the loss's own rounding:
# the ratio is noise there, and the step is judged by whether the gradient norm fell instead.
_ROUNDING_ULPS = 100.0


class Minimum(NamedTuple):
    """What :func:`minimise` reached (scalars as Python numbers).

    Arguments:
        params: the last accepted point (``params``' structure).
        loss, grad_norm: the loss and its gradient's Euclidean norm there.
        steps: Newton steps tried (accepted or not).
        accepted: steps taken.
        hvps: Hessian-vector products used by all CG solves.
        radius: the trust radius at the end.
        converged: ``grad_norm <= grad_tol``.
    """

    params: PyTree
    loss: float
    grad_norm: float
    steps: int
    accepted: int
    hvps: int
    radius: float
    converged: bool


def minimise(
    loss: Callable[..., jax.Array],
    params: PyTree,
    *args: Any,
    grad_tol: float,
    max_steps: int,
    cg_iter: int = 100,
    radius: float = 1.0,
    progress: Callable[[str], None] = print,
) -> Minimum:
    """Minimise ``loss(params, *args)`` over ``params`` until ``||grad|| <= grad_tol``.

    Arguments:
        loss: ``(params, *args) -> scalar``; ``params`` a pytree of float arrays.
        params: the start.
        *args: held fixed (passed to the compiled step as arguments, not baked in as constants).
        grad_tol: the gradient norm to reach (> 0).
        max_steps: the most Newton steps (> 0).
        cg_iter: the most CG iterations (Hessian-vector products) per step (> 0).
        radius: the initial trust radius (> 0), in the Euclidean norm of the flattened params.
        progress: called with a line every 10 steps.

    Returns:
        A :class:`Minimum`. It may stop short of ``grad_tol`` (``converged`` is false): out of
        steps, or with the radius below rounding (no step of any length decreases the loss as
        far as the arithmetic can tell).

    Raises:
        SolverConfigError: an option not positive.
    """
    for name, value in (("grad_tol", grad_tol), ("max_steps", max_steps), ("cg_iter", cg_iter)):
        require_positive(name, value)
    require_positive("radius", radius)
    flat, unravel = ravel_pytree(params)

    def f(x, a):
        return loss(unravel(x), *a)

    value_and_grad = jax.jit(jax.value_and_grad(f))

    @jax.jit
    def step(x, fx, g, r, a):
        def hvp(v):
            return curvature.hvp(f, x, a, v)

        g_norm = jnp.linalg.norm(g)
        p, hp, iterations = _steihaug(hvp, g, r, jnp.minimum(0.5, jnp.sqrt(g_norm)) * g_norm, cg_iter)
        predicted = -(g @ p + 0.5 * p @ hp)
        f_new, g_new = jax.value_and_grad(f)(x + p, a)
        ratio = (fx - f_new) / predicted
        within_rounding = predicted <= _ROUNDING_ULPS * jnp.finfo(x.dtype).eps * jnp.maximum(jnp.abs(fx), 1)
        good = jnp.where(within_rounding, jnp.linalg.norm(g_new) < g_norm, ratio > ACCEPT)
        good = good & jnp.isfinite(f_new) & jnp.all(jnp.isfinite(g_new))
        p_norm = jnp.linalg.norm(p)
        bad_model = ~good | (~within_rounding & (ratio < SHRINK))
        grow = good & ~within_rounding & (ratio > GROW) & (p_norm >= 0.99 * r)
        r_new = jnp.where(bad_model, SHRINK * p_norm, jnp.where(grow, 2 * r, r))
        g_next = jnp.where(good, g_new, g)
        x_next = jnp.where(good, x + p, x)
        return x_next, jnp.where(good, f_new, fx), g_next, jnp.linalg.norm(g_next), r_new, iterations, good

    a = tuple(args)
    fx, g = value_and_grad(flat, a)
    r, g_norm = jnp.asarray(radius, flat.dtype), float(jnp.linalg.norm(g))
    steps = accepted = hvps = 0
    # a radius this small moves no coordinate by more than rounding
    tiny = float(jnp.finfo(flat.dtype).eps) * max(1.0, float(jnp.linalg.norm(flat)))
    while steps < max_steps and g_norm > grad_tol and float(r) > tiny:
        flat, fx, g, g_norm, r, iterations, good = step(flat, fx, g, r, a)
        g_norm = float(g_norm)
        steps, accepted, hvps = steps + 1, accepted + int(good), hvps + int(iterations)
        if steps % 10 == 0:
            progress(
                f"  trust-region Newton: {steps} steps, gradient norm {g_norm:.3g}, radius {float(r):.3g}"
            )
    return Minimum(unravel(flat), float(fx), g_norm, steps, accepted, hvps, float(r), g_norm <= grad_tol)


def _steihaug(
    hvp: Callable[[jax.Array], jax.Array], g: jax.Array, radius: jax.Array, tol: jax.Array, max_iter: int
) -> tuple[jax.Array, jax.Array]:
    """Steihaug's CG: ``p`` approximately minimising ``g^T p + p^T H p / 2`` over ``||p|| <= radius``.

    Runs CG on ``H p = -g`` from ``p = 0`` until the residual is at most ``tol``; a direction of
    non-positive curvature, or an iterate leaving the ball, is followed to the boundary instead
    (where the model keeps decreasing along it). Returns ``(p, H p, Hessian-vector products
    used)``; ``H p`` is accumulated from the products CG made (the model's decrease needs it, and
    one more product in the program would lengthen its compilation by a third).
    """

    def boundary_step(p, d):
        # the tau >= 0 with ||p + tau d|| = radius (p is inside the ball, so one root is >= 0)
        dd, pd, pp = d @ d, p @ d, p @ p
        return (-pd + jnp.sqrt(jnp.maximum(pd**2 + dd * (radius**2 - pp), 0))) / dd

    def cond(state):
        _, _, r, _, k, done = state
        return (k < max_iter) & ~done & (jnp.linalg.norm(r) > tol)

    def body(state):
        p, hp, r, d, k, _ = state
        hd = hvp(d)
        curvature_d = d @ hd
        alpha = (r @ r) / curvature_d
        leaves = (curvature_d <= 0) | (jnp.linalg.norm(p + alpha * d) >= radius)
        step = jnp.where(leaves, boundary_step(p, d), alpha)
        r_next = r + alpha * hd
        d_next = -r_next + ((r_next @ r_next) / (r @ r)) * d
        return p + step * d, hp + step * hd, r_next, d_next, k + 1, leaves

    zero = jnp.zeros_like(g)
    init = (zero, zero, g, -g, jnp.zeros((), jnp.int32), jnp.zeros((), bool))
    p, hp, _, _, k, _ = jax.lax.while_loop(cond, body, init)
    return p, hp, k
