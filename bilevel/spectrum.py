"""The inner Hessian's extreme eigenvalues by the Lanczos iteration on Hessian-vector products.

Lanczos builds an orthonormal basis ``V`` of the Krylov space ``span(v, H v, ..., H^(m-1) v)``
from ``m`` products ``H u`` (forward-over-reverse, :func:`bilevel.curvature.hvp`) and the
tridiagonal ``T = V^T H V``; the eigenvalues of ``T`` (Ritz values) approximate those of ``H``,
the extreme ones first. Each new vector is orthogonalised against all stored ones (twice), which
keeps ``V`` orthonormal in floating point at ``O(m n)`` work per step for ``n`` parameters. See
``docs/solvers.md#curvature-the-hessians-extreme-eigenvalues``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from bilevel import curvature
from bilevel.errors import require_one_of, require_positive
from bilevel.linear_solve import LOOPS, iterate
from bilevel.problem import Problem

PyTree = Any

# A new direction whose norm after orthogonalisation is below this many rounding units of ||H||
# (the largest ||H v|| seen) is rounding noise: the Krylov space is invariant and Lanczos stops.
# At exact invariance the norm measured below one unit, in float32 and float64.
_BREAKDOWN_ULPS = 100.0


class EigenEstimate(NamedTuple):
    """What :func:`extreme_eigenvalues` returns (all scalars).

    Arguments:
        smallest, largest: the extreme Ritz values; ``smallest >= lambda_min(H)`` and
            ``largest <= lambda_max(H)`` up to rounding.
        iterations: Lanczos vectors used (int32): ``num_iter`` (at most ``n``), fewer where the
            Krylov space became invariant, in which case its Ritz values are eigenvalues of ``H``.
        smallest_residual, largest_residual: ``||H y - theta y||`` for the Ritz pair
            ``(theta, y)`` of each; ``H`` has an eigenvalue within that distance of ``theta``.
    """

    smallest: jax.Array
    largest: jax.Array
    iterations: jax.Array
    smallest_residual: jax.Array
    largest_residual: jax.Array


def extreme_eigenvalues(
    loss: Callable[[PyTree, PyTree], jax.Array],
    inner: PyTree,
    outer: PyTree,
    *,
    num_iter: int,
    key: jax.Array,
    loop: str = "python",
) -> EigenEstimate:
    """The smallest and largest eigenvalue of ``H = d2 loss / d inner2`` at ``(inner, outer)``.

    The extremes converge first (fastest where they are well separated from the rest of the
    spectrum); an indefinite ``H`` shows as ``smallest < 0``. ``num_iter >= n`` (the number of
    inner parameters) gives all of ``H``'s extreme eigenvalues up to rounding. Use float64 where
    the small end matters: in float32 eigenvalues below about ``1e-6 * |largest|`` drown in the
    products' rounding.

    Arguments:
        loss: ``f(inner, outer) -> scalar``.
        inner, outer: the point; ``inner`` a pytree of float arrays (flattened internally).
        num_iter: Lanczos steps (static, >= 1; capped at ``n``); each costs one Hessian-vector
            product, and the stored basis ``num_iter * n`` numbers.
        key: PRNG key for the random start vector.
        loop: ``"python"`` (``num_iter`` traced steps, masked after an invariant subspace is
            found) or ``"while"`` (a ``lax.while_loop`` that stops there); see
            :mod:`bilevel.linear_solve`.

    Returns:
        An :class:`EigenEstimate`. It is never NaN for finite ``H``: after an invariant subspace
        is found no further vector is used.

    Raises:
        SolverConfigError: ``num_iter`` below 1 or an unknown ``loop``.
    """
    require_positive("num_iter", num_iter)
    require_one_of("loop", loop, LOOPS)
    flat, unravel = ravel_pytree(inner)
    m = min(num_iter, flat.size)

    def matvec(v):
        return ravel_pytree(curvature.hvp(loss, inner, outer, unravel(v)))[0]

    def orthogonalise(basis, w):
        # Classical Gram-Schmidt, twice: once is not enough to stay orthogonal in floating point.
        for _ in range(2):
            w = w - basis.T @ (basis @ w)
        return w

    def step(state):
        basis, alphas, betas, v, j, scale, _ = state
        basis = basis.at[j].set(v)
        hv = matvec(v)
        alpha = v @ hv
        w = orthogonalise(basis, hv)
        beta = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.linalg.norm(hv))
        invariant = beta <= _BREAKDOWN_ULPS * jnp.finfo(flat.dtype).eps * scale
        v_next = w / jnp.where(invariant, jnp.ones_like(beta), beta)
        return basis, alphas.at[j].set(alpha), betas.at[j].set(beta), v_next, j + 1, scale, invariant

    start = jax.random.normal(key, flat.shape, flat.dtype)
    zero = jnp.zeros((), flat.dtype)
    state = (
        jnp.zeros((m, flat.size), flat.dtype),
        jnp.zeros(m, flat.dtype),
        jnp.zeros(m, flat.dtype),
        start / jnp.linalg.norm(start),
        jnp.zeros((), jnp.int32),
        zero,
        zero > 0,
    )
    (_, alphas, betas, _, _, _, _), k = iterate(step, state, lambda s: s[-1], m, loop)
    return _ritz_extremes(alphas, betas, k)


def inner_hessian_extremes(
    problem: Problem,
    inner: PyTree,
    outer: PyTree,
    batch: PyTree,
    *,
    num_iter: int,
    key: jax.Array,
    loop: str = "python",
) -> EigenEstimate:
    """:func:`extreme_eigenvalues` of ``problem``'s inner loss on ``batch``: the follower's Hessian.

    Arguments:
        problem: whose ``inner_loss`` (aux dropped) gives the Hessian.
        inner, outer: the point.
        batch: one inner batch.
        num_iter, key, loop: as in :func:`extreme_eigenvalues`.

    Returns:
        An :class:`EigenEstimate`.

    Raises:
        SolverConfigError: as :func:`extreme_eigenvalues`.
    """
    return extreme_eigenvalues(
        lambda i, o: problem.inner_value(i, o, batch)[0], inner, outer, num_iter=num_iter, key=key, loop=loop
    )


def _ritz_extremes(alphas: jax.Array, betas: jax.Array, k: jax.Array) -> EigenEstimate:
    """The extreme eigenpairs of the leading ``k x k`` block of the tridiagonal ``T``.

    ``alphas`` ``(m,)`` is ``T``'s diagonal and ``betas[i]`` couples vectors ``i`` and ``i + 1``;
    only the first ``k`` entries of each are set.
    """
    m = alphas.shape[0]
    used = jnp.arange(m, dtype=k.dtype) < k
    # Unused rows become a decoupled block of T[0, 0], a Rayleigh quotient of the used block, so
    # they add no eigenvalue outside the used block's range.
    diagonal = jnp.where(used, alphas, alphas[0])
    coupling = jnp.where(used[1:], betas[:-1], jnp.zeros_like(betas[:-1]))
    t = jnp.diag(diagonal) + jnp.diag(coupling, 1) + jnp.diag(coupling, -1)
    # eigh rather than eigvalsh: the eigenvectors' last used entries give the Ritz residuals.
    theta, s = jnp.linalg.eigh(t)
    residuals = jnp.abs(betas[k - 1] * s[k - 1])
    return EigenEstimate(theta[0], theta[-1], k, residuals[0], residuals[-1])
