"""CAF search: the weight hypergradient's exactness in float64 (one virtual step, and IFT at a converged
fusion network), and a planted answer it finds."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import bilevel
from bilevel import study
from fuse4seg_jax.losses import caf_term_names, init_caf_logits
from fuse4seg_jax.search.problem import SearchProblem
from fuse4seg_jax.search.step import init_state, search_step, warmup_step


def pixel_fusion(params, images):
    """A per-pixel fusion network: ``sigmoid(images @ w + b)``, ``(B, H, W, N) -> (B, H, W, 1)``."""
    return jax.nn.sigmoid(images @ params["w"] + params["b"])[..., None]


def threshold_task_loss(task, fusion, batch):
    """A per-pixel logistic classifier of the fused image: cross-entropy against binary labels."""
    fused = pixel_fusion(fusion, batch["image"])[..., 0]
    logits = task["a"] * (fused - task["c"])
    labels = batch["label"].astype(logits.dtype)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels)), {}


PROBLEM = SearchProblem(pixel_fusion, threshold_task_loss)


def planted_batch(seed, dtype=np.float32, size=4, side=16):
    """Two sources of independent noise; the label is source 0 above 0.5: only source 0 tells it."""
    rng = np.random.default_rng(seed)
    images = rng.random((size, side, side, 2)).astype(dtype)
    return {"image": images, "label": (images[..., 0] > 0.5).astype(np.int32)}


def fusion_params(dtype):
    return {"w": jnp.array([0.3, 0.4], dtype), "b": jnp.array(-0.2, dtype)}


def task_params(dtype):
    return {"a": jnp.array(2.0, dtype), "c": jnp.array(0.5, dtype)}


def hypergradient_at(solver, inner_opt, dtype):
    beta = jnp.asarray(np.random.default_rng(3).normal(size=15), dtype)
    train, search = planted_batch(0, dtype), planted_batch(1, dtype)
    search = {**search, "task": task_params(dtype)}
    fusion = fusion_params(dtype)
    out = jax.jit(bilevel.hypergradient, static_argnums=(0, 1, 4))(
        PROBLEM.as_bilevel(),
        solver,
        fusion,
        beta,
        inner_opt,
        inner_opt.init(fusion),
        jax.tree.map(lambda x: x[None], train),
        search,
    )
    return out.hypergrad, beta, fusion, train, search


def outer_after_step(step, beta, fusion, train, search):
    """``F(w'(beta))``, the task loss on D_search after the fusion step ``step(fusion, beta)``."""
    return PROBLEM.search_loss(step(fusion, beta), beta, search)[0]


@pytest.mark.slow
def test_finite_difference_matches_the_exact_one_step_darts_expression_in_float64(standard_promotion):
    lr = 0.5
    with jax.enable_x64(True):
        solver = bilevel.FiniteDifference(eps_scale=1e-7)
        hypergrad, beta, fusion, train, search = hypergradient_at(solver, optax.sgd(lr), jnp.float64)

        def inner_grad(w, b):
            return jax.grad(lambda w_: PROBLEM.fusion_loss(w_, b, train)[0])(w)

        moved = jax.tree.map(lambda w, g: w - lr * g, fusion, inner_grad(fusion, beta))
        v = jax.grad(lambda w: PROBLEM.search_loss(w, beta, search)[0])(moved)
        # DARTS: -lr * d/d beta <grad_w f(w, beta), v>, the exact mixed second-order term
        exact = -lr * jax.grad(lambda b: bilevel.tree.vdot(inner_grad(fusion, b), v))(beta)
        assert float(jnp.linalg.norm(exact)) > 1e-4  # a real signal, not two zeros
        np.testing.assert_allclose(hypergrad, exact, atol=1e-5 * float(jnp.max(jnp.abs(exact))))


@pytest.mark.slow
def test_unrolled_with_one_virtual_step_is_the_gradient_through_that_step_in_float64(standard_promotion):
    # heavy-ball SGD: Adam's first step from a fresh state is lr * sign(g), flat in beta
    opt = optax.sgd(0.5, momentum=0.9)
    with jax.enable_x64(True):
        hypergrad, beta, fusion, train, search = hypergradient_at(bilevel.Unrolled(), opt, jnp.float64)

        def sgd_step(w, b):
            g = jax.grad(lambda w_: PROBLEM.fusion_loss(w_, b, train)[0])(w)
            updates, _ = opt.update(g, opt.init(w), w)
            return optax.apply_updates(w, updates)

        reference = jax.grad(lambda b: outer_after_step(sgd_step, b, fusion, train, search))(beta)
        assert float(jnp.linalg.norm(reference)) > 1e-6
        np.testing.assert_allclose(hypergrad, reference, rtol=0, atol=1e-10)


@pytest.mark.slow
def test_implicit_cg_at_a_converged_fusion_network_matches_a_dense_ift_reference_in_float64(
    standard_promotion,
):
    with jax.enable_x64(True):
        beta = jnp.asarray(np.random.default_rng(3).normal(size=15), jnp.float64)
        train, search = planted_batch(0, np.float64), planted_batch(1, np.float64)
        search = {**search, "task": task_params(jnp.float64)}
        sgd = optax.sgd(1e-3)
        fusion = fusion_params(jnp.float64)
        call = bilevel.SolverCall(
            PROBLEM.as_bilevel(),
            fusion,
            beta,
            sgd,
            sgd.init(fusion),
            jax.tree.map(lambda x: x[None], train),
            search,
        )
        reached, descent = study.converge_follower(call, grad_tol=1e-12, max_steps=50, lr=1e-3)
        assert descent["grad_norm"] <= 1e-12, descent
        solver = bilevel.make_solver("implicit_cg", max_iter=20, tol=1e-12, solve_loop="while")
        hypergrad, info = study.solve_reference(solver, reached)
        assert info["reason"] == "ok", info

        flat, unravel = ravel_pytree(reached.inner_params)

        def fusion_loss(w, b):
            return PROBLEM.fusion_loss(unravel(w), b, train)[0]

        hessian = jax.hessian(fusion_loss)(flat, beta)
        assert float(np.linalg.eigvalsh(hessian)[0]) > 0  # a strict minimum: IFT applies
        mixed = jax.jacobian(jax.grad(fusion_loss), argnums=1)(flat, beta)  # d2 L_f / (d w d beta)
        outer_grad = jax.grad(lambda w: PROBLEM.search_loss(unravel(w), beta, search)[0])(flat)
        # IFT: dw*/dbeta = -H^-1 mixed, and the task loss reads beta only through w*
        exact = -mixed.T @ np.linalg.solve(hessian, outer_grad)
        assert float(jnp.linalg.norm(exact)) > 1e-6
        assert float(jnp.linalg.norm(hypergrad - exact) / jnp.linalg.norm(exact)) < 1e-6


def test_first_order_gives_beta_no_signal_as_the_task_loss_does_not_read_it(standard_promotion):
    hypergrad, *_ = hypergradient_at(bilevel.FirstOrder(), optax.sgd(0.5), jnp.float32)
    assert float(jnp.max(jnp.abs(hypergrad))) == 0.0


@functools.cache
def planted_step(solver):
    return jax.jit(
        functools.partial(
            search_step,
            problem=PROBLEM,
            solver=solver,
            inner_steps=1,
            task_opt=optax.adam(0.1),
            fusion_opt=optax.adam(0.05),
            beta_opt=optax.adam(optax.exponential_decay(5e-2, 1, 0.998)),
        )
    )


@pytest.mark.parametrize("solver", [bilevel.FiniteDifference(), bilevel.Unrolled()], ids=type)
def test_search_raises_the_weight_of_a_term_on_the_informative_source(solver, standard_promotion):
    step = planted_step(solver)
    state = init_state(
        task_params(jnp.float32),
        fusion_params(jnp.float32),
        init_caf_logits(),
        task_opt=optax.adam(0.1),
        fusion_opt=optax.adam(0.05),
        beta_opt=optax.adam(optax.exponential_decay(5e-2, 1, 0.998)),
    )
    for i in range(60):
        state, metrics = step(state, planted_batch(2 * i), planted_batch(2 * i + 1))
    names = caf_term_names(2)
    weights = np.asarray(metrics["weights"])
    top = names[int(np.argmax(weights))]
    source_0 = sum(w for n, w in zip(names, weights, strict=True) if n.endswith("_0"))
    source_1 = sum(w for n, w in zip(names, weights, strict=True) if n.endswith("_1"))
    assert top.endswith("_0"), dict(zip(names, weights.round(3), strict=True))
    assert source_0 > source_1 + 0.1


def test_a_warmup_step_is_a_plain_step_of_both_networks_and_keeps_beta(standard_promotion):
    sgd = optax.sgd(0.5)
    beta = jnp.asarray(np.random.default_rng(4).normal(size=15), jnp.float32)
    task, fusion = task_params(jnp.float32), fusion_params(jnp.float32)
    state = init_state(task, fusion, beta, task_opt=sgd, fusion_opt=sgd, beta_opt=optax.adam(0.1))
    batch = planted_batch(5)
    new, metrics = jax.jit(functools.partial(warmup_step, problem=PROBLEM, task_opt=sgd, fusion_opt=sgd))(
        state, batch
    )
    task_grad = jax.jit(jax.grad(lambda t: PROBLEM.task_loss(t, fusion, batch)[0]))(task)
    fusion_grad = jax.jit(jax.grad(lambda f: PROBLEM.fusion_loss(f, beta, batch)[0]))(fusion)
    for got, start, grad in ((new["task"], task, task_grad), (new["fusion"], fusion, fusion_grad)):
        expected = jax.tree.map(lambda p, g: p - 0.5 * g, start, grad)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), got, expected)
    assert float(jnp.linalg.norm(fusion_grad["w"])) > 1e-4  # the comparison above is not vacuous
    for key in ("beta", "beta_opt", "step"):
        jax.tree.map(np.testing.assert_array_equal, new[key], state[key])
    np.testing.assert_allclose(metrics["weights"], jax.nn.softmax(beta), rtol=1e-6)
