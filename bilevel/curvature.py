"""Second-order products of the inner loss, all forward-over-reverse.

Reverse-over-reverse through a convolution makes XLA:CPU build a huge-window convolution (one
HVP 464 ms against 15.8 ms forward-over-reverse, ``docs/solvers.md#xlacpu-performance-facts``).
Here every second-order product is one ``jax.jvp`` of the gradient with respect to *both* parameter
sets along ``(u, 0)``, which yields the Hessian-vector product ``H u`` and the mixed product
``d/d outer <grad_inner f, u>`` in the same pass, so no reverse-over-reverse is ever traced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from bilevel import inner_loop, schedule, tree
from bilevel.problem import Problem

PyTree = Any


def gradient_products(
    loss: Callable[[PyTree, PyTree], jax.Array], inner: PyTree, outer: PyTree, u: PyTree
) -> tuple[PyTree, PyTree, PyTree]:
    """``(grad_inner f, H u, M u)`` with ``H = d2f/d inner2`` and ``M = d2f/(d outer d inner)``.

    Arguments:
        loss: ``f(inner, outer) -> scalar``.
        inner, outer: the point.
        u: a tangent with the structure of ``inner``.

    Returns:
        The inner gradient (inner's structure), ``H u`` (inner's structure) and ``M u`` (outer's
        structure), from one forward-over-reverse pass.
    """
    grads = jax.grad(loss, argnums=(0, 1))
    (grad_inner, _), (hu, mu) = jax.jvp(lambda i: grads(i, outer), (inner,), (u,))
    return grad_inner, hu, mu


def differentiable_step(
    problem: Problem,
    inner_opt: optax.GradientTransformation,
    damping: float = 0.0,
    *,
    store_linearization: bool = False,
    reuse_outer_work: bool = False,
) -> inner_loop.Step:
    """The inner step with a reverse-mode rule built from forward-over-reverse products.

    Arguments:
        problem: whose ``inner_loss`` the step descends.
        inner_opt: the inner optimiser.
        damping: added to ``H`` in the reverse rule only (>= 0).
        store_linearization: keep the step's linearisation from the forward pass
            (:func:`bilevel.inner_loop.descend`) instead of recomputing the step's gradient in the
            reverse rule: one gradient's work less per step, one step's activations more kept.
        reuse_outer_work: in the reverse rule's recomputation, let only the work that depends on
            ``inner`` wait for the cotangent; the work on ``outer`` and ``batch`` alone (the
            leader's forward pass) is then the same computation as in the forward sweep, which
            XLA's common-subexpression elimination performs once and keeps until the reverse
            rule reads it. No effect with ``store_linearization`` (nothing is recomputed).

    Returns:
        A step ``(inner, opt_state, outer, batch) -> (inner, opt_state, StepInfo)``.

    Its VJP is the exact transpose of the step map (for ``damping = 0``): the optimiser's own VJP
    (first order, cheap) followed by ``H`` and ``M`` from :func:`gradient_products`. ``damping``
    adds ``damping * I`` to ``H`` in the VJP only, which is the step map of the inner loss plus the
    proximal term ``damping / 2 * ||inner - inner_t||^2`` (used by the damped fixed-point solve).
    Residuals per step are the step's inputs and gradient; activations are recomputed in the
    backward pass (or, with ``store_linearization``, kept from the forward pass). The
    ``StepInfo`` outputs carry no gradient.
    """
    plain = inner_loop.plain_step(problem, inner_opt)

    @jax.custom_vjp
    def step(inner, opt_state, outer, batch):
        return plain(inner, opt_state, outer, batch)

    def step_fwd(inner, opt_state, outer, batch):
        new_inner, new_state, info, grad, products = inner_loop.descend(
            problem, inner_opt, inner, opt_state, outer, batch, linearize=store_linearization
        )
        return (new_inner, new_state, info), (inner, opt_state, outer, batch, grad, products)

    def step_bwd(residuals, cotangents):
        inner, opt_state, outer, batch, grad, products = residuals
        ct_inner, ct_state, _ = cotangents
        _, optimizer_vjp = jax.vjp(
            lambda g, s, p: inner_loop.apply_optimizer(inner_opt, g, s, p), grad, opt_state, inner
        )
        ct_grad, ct_opt_state, ct_params = optimizer_vjp((ct_inner, ct_state))
        if products is not None:
            hu, mu = products(ct_grad)
        else:
            # Recompute only once the cotangent exists: otherwise XLA may run every step's
            # recomputation during the forward sweep and keep all of them (bilevel.schedule).
            if reuse_outer_work:
                # ordered as in inner_loop.descend, so that this part is the forward's own
                outer, batch = schedule.after((outer, batch), inner)
                inner = schedule.after(inner, ct_grad)
            else:
                inner, outer, batch = schedule.after((inner, outer, batch), ct_grad)

            def loss(i, o):
                return problem.inner_value(i, o, batch)[0]

            _, hu, mu = gradient_products(loss, inner, outer, ct_grad)
        ct_inner_in = tree.add(ct_params, tree.axpy(damping, ct_grad, hu))
        return ct_inner_in, ct_opt_state, mu, None

    step.defvjp(step_fwd, step_bwd)
    return step


def hvp(loss: Callable[[PyTree, PyTree], jax.Array], inner: PyTree, outer: PyTree, u: PyTree):
    """``H u`` alone (``jax.jvp`` of the inner gradient), for the iterations of a linear solve."""
    return jax.jvp(lambda i: jax.grad(loss)(i, outer), (inner,), (u,))[1]
