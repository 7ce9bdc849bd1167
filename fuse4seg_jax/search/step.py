"""One iteration of CAF Algorithm 1 as a pure, jit-able function of the search state.

The state is a plain dict of pytrees:

    step        int32 scalar, search iterations done
    task        task network parameters       task_opt    its optax state
    fusion      fusion network parameters     fusion_opt  its optax state
    beta        (K,) loss-weight logits       beta_opt    its optax state

An iteration, in Algorithm 1's order:

1. the task network takes a step on its loss over the current fused images of D_train;
2. the fusion network takes ``inner_steps`` steps on ``L_f(beta)`` over D_train, and
3. beta takes a step on the hypergradient of the task loss on D_search (task network from 1)
   through those fusion steps, from any ``bilevel`` solver.

2 and 3 are one ``bilevel.step``: the fusion steps the solver differentiates are the ones applied
(DARTS' order), not a second, separate virtual step from the updated fusion network
(``docs/caf_search.md#what-is-differentiated``).

A warm-up iteration (:func:`warmup_step`, before the search) takes 1 and one fusion step on
``L_f(beta)`` with beta held at its value: the task network leaves the trivial predictor before
its loss is asked how the fused image should change (``docs/caf_search.md#task-network-warm-up``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

import bilevel
from fuse4seg_jax.losses.caf import caf_weights
from fuse4seg_jax.search.problem import SearchProblem

State = dict[str, Any]


def init_state(
    task: Any,
    fusion: Any,
    beta: jax.Array,
    *,
    task_opt: optax.GradientTransformation,
    fusion_opt: optax.GradientTransformation,
    beta_opt: optax.GradientTransformation,
) -> State:
    """The search state at iteration 0 (module docstring)."""
    return {
        "step": jnp.zeros((), jnp.int32),
        "task": task,
        "task_opt": task_opt.init(task),
        "fusion": fusion,
        "fusion_opt": fusion_opt.init(fusion),
        "beta": beta,
        "beta_opt": beta_opt.init(beta),
    }


def search_step(
    state: State,
    train_batch: dict,
    search_batch: dict,
    *,
    problem: SearchProblem,
    solver: bilevel.Solver,
    inner_steps: int,
    task_opt: optax.GradientTransformation,
    fusion_opt: optax.GradientTransformation,
    beta_opt: optax.GradientTransformation,
) -> tuple[State, dict[str, jax.Array]]:
    """One iteration of Algorithm 1 (module docstring).

    Arguments:
        state: the search state.
        train_batch: a D_train batch (``image (B, H, W, N)``, ``label``), used by every fusion
            step and the task step.
        search_batch: a D_search batch of the same keys.
        problem: the search problem.
        solver: the hypergradient solver.
        inner_steps: fusion steps per iteration (K; CAF: 1).
        task_opt, fusion_opt, beta_opt: the three optimisers.

    Returns:
        The new state and scalar metrics: ``task_loss`` (step 1, before its update),
        ``fusion_loss`` and ``search_loss`` (the solver's ``inner_loss`` and ``outer_loss``),
        the solver's other diagnostics, the unweighted CAF terms of the last fusion step, and
        ``weights`` (K,), ``softmax`` of the new beta.
    """
    task, task_opt_state, task_loss = _task_update(state, train_batch, problem, task_opt)
    inner_batches = jax.tree.map(lambda x: jnp.broadcast_to(x, (inner_steps, *x.shape)), train_batch)
    bstate, diag = bilevel.step(
        bilevel.BilevelState(
            state["fusion"], state["beta"], state["fusion_opt"], state["beta_opt"], state["step"]
        ),
        inner_batches,
        {**search_batch, "task": task},
        problem=problem.as_bilevel(),
        solver=solver,
        inner_opt=fusion_opt,
        outer_opt=beta_opt,
    )
    terms = diag.pop("inner_aux")
    diag.pop("outer_aux")
    new = {
        "step": bstate.step,
        "task": task,
        "task_opt": task_opt_state,
        "fusion": bstate.inner_params,
        "fusion_opt": bstate.inner_opt_state,
        "beta": bstate.outer_params,
        "beta_opt": bstate.outer_opt_state,
    }
    metrics = {
        "task_loss": task_loss,
        "fusion_loss": diag.pop("inner_loss"),
        "search_loss": diag.pop("outer_loss"),
        **diag,
        **terms,
        "weights": caf_weights(bstate.outer_params),
    }
    return new, metrics


def warmup_step(
    state: State,
    train_batch: dict,
    *,
    problem: SearchProblem,
    task_opt: optax.GradientTransformation,
    fusion_opt: optax.GradientTransformation,
) -> tuple[State, dict[str, jax.Array]]:
    """One warm-up iteration (module docstring): beta, its optimiser and ``step`` are kept.

    Arguments:
        state: the search state.
        train_batch: a D_train batch, as in :func:`search_step`.
        problem: the search problem.
        task_opt, fusion_opt: the task and fusion networks' optimisers.

    Returns:
        The new state and scalar metrics: ``task_loss``, ``fusion_loss`` (both before the
        updates), the unweighted CAF terms and ``weights``, ``softmax`` of the kept beta.
    """
    task, task_opt_state, task_loss = _task_update(state, train_batch, problem, task_opt)
    (fusion_loss, terms), grads = jax.value_and_grad(problem.fusion_loss, has_aux=True)(
        state["fusion"], state["beta"], train_batch
    )
    updates, fusion_opt_state = fusion_opt.update(grads, state["fusion_opt"], state["fusion"])
    new = {
        **state,
        "task": task,
        "task_opt": task_opt_state,
        "fusion": optax.apply_updates(state["fusion"], updates),
        "fusion_opt": fusion_opt_state,
    }
    metrics = {
        "task_loss": task_loss,
        "fusion_loss": fusion_loss,
        **terms,
        "weights": caf_weights(state["beta"]),
    }
    return new, metrics


def _task_update(state: State, batch: dict, problem: SearchProblem, task_opt: optax.GradientTransformation):
    """Step 1: the task network's step on its loss over ``batch``'s current fused images."""
    (loss, _), grads = jax.value_and_grad(problem.task_loss, has_aux=True)(
        state["task"], state["fusion"], batch
    )
    updates, opt_state = task_opt.update(grads, state["task_opt"], state["task"])
    return optax.apply_updates(state["task"], updates), opt_state, loss
