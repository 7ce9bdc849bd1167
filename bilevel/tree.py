"""Vector-space arithmetic on pytrees of arrays (the solvers' parameters are pytrees)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def add(x: PyTree, y: PyTree) -> PyTree:
    return jax.tree.map(jnp.add, x, y)


def sub(x: PyTree, y: PyTree) -> PyTree:
    return jax.tree.map(jnp.subtract, x, y)


def scale(a: jax.Array | float, x: PyTree) -> PyTree:
    """``a * x`` with ``a`` cast to each leaf's dtype (strict dtype promotion)."""
    return jax.tree.map(lambda leaf: jnp.asarray(a, leaf.dtype) * leaf, x)


def axpy(a: jax.Array | float, x: PyTree, y: PyTree) -> PyTree:
    """``a * x + y``."""
    return jax.tree.map(lambda xl, yl: jnp.asarray(a, xl.dtype) * xl + yl, x, y)


def vdot(x: PyTree, y: PyTree) -> jax.Array:
    """Real inner product summed over all leaves."""
    parts = [jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True)]
    return sum(parts[1:], parts[0]) if parts else jnp.zeros(())


def norm(x: PyTree) -> jax.Array:
    """Global Euclidean norm over all leaves."""
    return jnp.sqrt(vdot(x, x))


def cosine(x: PyTree, y: PyTree) -> jax.Array:
    """The cosine of the angle between two pytrees, clipped to [-1, 1] (rounding can pass 1)."""
    return jnp.clip(vdot(x, y) / (norm(x) * norm(y)), -1.0, 1.0)


def zeros_like(x: PyTree) -> PyTree:
    return jax.tree.map(jnp.zeros_like, x)


def select(pred: jax.Array, x: PyTree, y: PyTree) -> PyTree:
    """``x`` where the scalar ``pred`` holds, else ``y`` (leaf by leaf)."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), x, y)


def all_finite(x: PyTree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(x)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)
