"""Constraints that XLA:CPU honours: ordering, for bounding what a compiled program keeps alive, and
computing a value once.

XLA schedules an instruction as soon as its operands exist, and its memory-minimising schedulers
are heuristics: a computation whose inputs are all available during the forward sweep (the
leader's part of every inner step, the recomputation inside a custom backward rule) can be run
there, and its results then stay live until their consumer, K steps later
(``docs/solvers.md#rematerialisation``). ``jax.lax.optimization_barrier`` is the documented way to
order such work, but XLA:CPU removes barriers before it schedules (its
``OptimizationBarrierExpander`` pass), so on CPU only a data dependency orders anything.
:func:`after` adds one that no simplification removes and that changes no value;
:func:`checkpoint` is ``jax.checkpoint`` built on it. :func:`materialize` stops XLA from
recomputing an element-wise result inside each of its readers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def after(values: PyTree, anchor: PyTree) -> PyTree:
    """``values`` unchanged, but computable only once every leaf of ``anchor`` exists.

    Each leaf gets ``0 * s`` added, ``s`` being the sum of ``anchor``'s floating leaves. XLA
    keeps ``0 * s`` for floating point (it is NaN for a non-finite ``s``), so the dependency
    survives every pass, yet for finite ``s`` the values are exactly the same (a ``-0.0`` leaf
    element becomes ``+0.0``). A non-finite ``anchor`` makes the values NaN (integer leaves: an
    unspecified integer), which only happens where the result is already non-finite.

    Arguments:
        values: pytree of arrays (any dtypes) that must wait.
        anchor: pytree whose floating leaves they wait for; no floating leaf: ``values`` as is.

    Returns:
        ``values`` with the same structure, shapes, dtypes and (finite ``anchor``) values.
    """
    sums = [jnp.sum(leaf) for leaf in jax.tree.leaves(anchor) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    if not sums:
        return values
    zero = sum((0 * s).astype(jnp.float32) for s in sums)
    return jax.tree.map(lambda leaf: leaf + zero.astype(leaf.dtype), values)


def materialize(x: jax.Array) -> jax.Array:
    """``x`` unchanged, but computed once and stored, not recomputed inside each of its consumers.

    XLA fuses an element-wise computation into every instruction that reads its result, so a
    result read several times is computed several times, and in the reader's order: on XLA:CPU
    each 3 x 3 depthwise convolution of the paper-size leader was recomputed inside the three
    head-major transposes of its ``q, k, v`` and inside the gradient of each of its kernel's
    taps; storing it cut the leader's forward+backward from 16.1 to 11.2 s. Here ``x`` passes
    through a dynamic update of its first element with itself: XLA keeps that update (it cannot
    prove it changes nothing), performs it in place where ``x`` is computed, and fuses it into no
    reader (seen on jaxlib 0.10.2), so the readers load the stored ``x``. No value changes, NaN
    and infinity included.

    Arguments:
        x: an array of rank >= 1 with no zero-length axis.

    Returns:
        ``x``.
    """
    first = x[(slice(0, 1),) * x.ndim]
    return jax.lax.dynamic_update_slice(x, first, (0,) * x.ndim)


def checkpoint(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` whose reverse pass stores only its inputs and reruns it once its cotangent exists.

    The values and derivatives of ``jax.checkpoint(fn)``; ``jax.checkpoint`` orders its
    recomputation with an optimisation barrier, which XLA:CPU drops, so there the recomputation of
    every checkpointed call could run in the forward pass and all of them be kept. Here the
    recomputation's inputs pass through :func:`after` the incoming cotangent.

    Arguments:
        fn: a function of positional array pytrees (differentiated with respect to all of them).

    Returns:
        ``fn`` with that reverse rule. Reverse mode and forward-over-reverse (``jax.jvp`` of a
        gradient, as Hessian-vector products) work; reverse-over-reverse does not.
    """

    @jax.custom_vjp
    def wrapped(*args):
        return fn(*args)

    def forward(*args):
        # Evaluated through its linearisation (XLA drops the unused residuals): under a jax.jvp
        # of the gradient (forward-over-reverse products), plain evaluation would hand any custom
        # VJP inside fn forward-mode tracers, which custom VJPs refuse.
        return jax.vjp(fn, *args)[0], args

    def backward(args, cotangent):
        _, vjp = jax.vjp(fn, *after(args, cotangent))
        return vjp(cotangent)

    wrapped.defvjp(forward, backward)
    return wrapped
