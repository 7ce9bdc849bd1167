"""The follower's K optimiser steps with the leader frozen, as a Python loop or a ``lax.scan``.

A step is ``(inner, opt_state, outer, batch) -> (inner, opt_state, StepInfo)``. The loop is a
Python loop traced K times by default: on XLA:CPU convolutions inside ``lax.scan`` ran about 10x
slower than the same steps unrolled (``docs/solvers.md#xlacpu-performance-facts``); ``scan=True``
compiles in time independent of K.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import optax

from bilevel import schedule, tree
from bilevel.problem import Problem

PyTree = Any


class StepInfo(NamedTuple):
    """What one inner step reports: its loss and gradient norm (before the update) and aux."""

    loss: jax.Array
    grad_norm: jax.Array
    aux: Any


Step = Callable[[PyTree, PyTree, PyTree, PyTree], tuple[PyTree, PyTree, StepInfo]]


def num_steps(batches: PyTree) -> int:
    """K, the leading axis shared by every leaf of ``inner_batches``.

    Raises:
        ValueError: no array leaves, or leaves without one shared leading axis.
    """
    leaves = jax.tree.leaves(batches)
    if not leaves:
        raise ValueError("inner_batches has no array leaves, so the number of steps K is unknown")
    sizes = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"inner_batches leaves need one shared leading axis K, got {sizes}")
    return sizes.pop()


def batch_at(batches: PyTree, index: int | slice) -> PyTree:
    """Batch ``index`` (or the sub-sequence ``index`` when it is a slice) of ``inner_batches``."""
    return jax.tree.map(lambda leaf: leaf[index], batches)


def apply_optimizer(
    inner_opt: optax.GradientTransformation, grad: PyTree, opt_state: PyTree, inner: PyTree
) -> tuple[PyTree, PyTree]:
    """The optimiser's map ``(grad, state, params) -> (new params, new state)``."""
    updates, opt_state = inner_opt.update(grad, opt_state, inner)
    return optax.apply_updates(inner, updates), opt_state


def descend(
    problem: Problem,
    inner_opt: optax.GradientTransformation,
    inner: PyTree,
    opt_state: PyTree,
    outer: PyTree,
    batch: PyTree,
    *,
    linearize: bool = False,
) -> tuple[PyTree, PyTree, StepInfo, PyTree, Callable[[PyTree], tuple[PyTree, PyTree]] | None]:
    """One optimiser step on ``problem.inner_loss``: new inner parameters and optimiser state,
    the ``StepInfo``, the inner gradient the step used, and with ``linearize`` that gradient's
    linearisation ``products(u) = (H u, M u)`` at ``inner`` along ``u`` in both parameter sets
    (``jax.linearize``: the step's activations are kept for it, so a product costs no
    recomputation of the gradient), else ``None``.
    """
    # The leader's part of the step needs only outer and batch: made to wait for the step's
    # input, or XLA may compute it for all K steps at the start and keep every result.
    outer, batch = schedule.after((outer, batch), inner)
    if linearize:
        value_and_grads = jax.value_and_grad(problem.inner_value, (0, 1), has_aux=True)

        def gradients(i):
            (loss, aux), grads = value_and_grads(i, outer, batch)
            return grads, (loss, aux)

        (grad, _), products, (loss, aux) = jax.linearize(gradients, inner, has_aux=True)
    else:
        (loss, aux), grad = jax.value_and_grad(problem.inner_value, has_aux=True)(inner, outer, batch)
        products = None
    new_inner, opt_state = apply_optimizer(inner_opt, grad, opt_state, inner)
    return new_inner, opt_state, StepInfo(loss, tree.norm(grad), aux), grad, products


def plain_step(problem: Problem, inner_opt: optax.GradientTransformation) -> Step:
    """One optimiser step on ``problem.inner_loss`` (differentiable by JAX's own rules)."""

    def step(inner, opt_state, outer, batch):
        return descend(problem, inner_opt, inner, opt_state, outer, batch)[:3]

    return step


def run(
    step: Step,
    inner: PyTree,
    opt_state: PyTree,
    outer: PyTree,
    batches: PyTree,
    *,
    scan: bool = False,
) -> tuple[PyTree, PyTree, StepInfo]:
    """Apply ``step`` once per batch along the leading axis of ``batches`` (K >= 1).

    Arguments:
        step: one inner step.
        inner, opt_state: where to start.
        outer: the leader's parameters, held fixed.
        batches: K batches stacked on a leading axis.
        scan: run in a ``lax.scan`` instead of a Python loop.

    Returns:
        The final inner parameters and optimiser state and the last step's ``StepInfo``.

    Raises:
        ValueError: ``batches`` has no steps.
    """
    k = num_steps(batches)
    if k < 1:
        raise ValueError("inner_batches must hold at least one batch (K >= 1)")
    if scan:

        def body(carry, batch):
            new_inner, new_state, info = step(*carry, outer, batch)
            return (new_inner, new_state), info

        (inner, opt_state), infos = jax.lax.scan(body, (inner, opt_state), batches)
        return inner, opt_state, batch_at(infos, -1)
    info = None
    for t in range(k):
        inner, opt_state, info = step(inner, opt_state, outer, batch_at(batches, t))
    return inner, opt_state, info
