"""Unrolled hypergradients: exact K-step gradients, truncation, rematerialisation, stored
linearisations, forward mode."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bilevel
from bilevel import closed_form, inner_loop

OPTIMIZERS = {
    "sgd": optax.sgd(0.3),
    "momentum": optax.sgd(0.3, momentum=0.9),
    "adamw": optax.adamw(0.05, weight_decay=1e-2),
}


def _k_step_objective(cf, inner_opt, batches, skip=0):
    """outer -> F(inner_K(outer), outer), the leader's influence cut for the first ``skip`` steps.

    Written with the plain step (JAX's own derivative rules), independently of the solvers.
    """
    step = inner_loop.plain_step(cf.problem, inner_opt)
    start, state = cf.inner_init, inner_opt.init(cf.inner_init)
    if skip:
        start, state, _ = inner_loop.run(
            step, start, state, cf.outer_init, inner_loop.batch_at(batches, slice(0, skip))
        )
    tail = inner_loop.batch_at(batches, slice(skip, None))

    def objective(outer):
        inner, _, _ = inner_loop.run(step, start, state, outer, tail)
        return cf.problem.outer_loss(inner, outer, cf.outer_batch)

    return objective


def _promotion(inner_opt):
    """optax's Adam computes ``b1 ** count`` (Python float, int32): it needs standard promotion."""
    return jax.numpy_dtype_promotion("standard" if inner_opt is OPTIMIZERS["adamw"] else "strict")


def _central_difference(fun, x, h=1e-5):
    basis = np.eye(x.size).reshape(x.size, *x.shape)
    return np.array([(fun(x + h * e) - fun(x - h * e)) / (2 * h) for e in basis]).reshape(x.shape)


@pytest.mark.parametrize("opt_name", ["sgd", "momentum", pytest.param("adamw", marks=pytest.mark.slow)])
def test_unrolled_equals_central_difference_of_the_k_step_map(opt_name):
    inner_opt = OPTIMIZERS[opt_name]
    with jax.enable_x64(True), _promotion(inner_opt):
        cf = closed_form.logistic()
        batches = cf.inner_batches(4)
        out = cf.solve(bilevel.Unrolled(), inner_opt, batches)
        expected = _central_difference(_k_step_objective(cf, inner_opt, batches), cf.outer_init)
        np.testing.assert_allclose(out.hypergrad, expected, rtol=1e-6, atol=1e-12)
        assert out.diagnostics["iterations"] == 4 and not out.diagnostics["failed"]


def test_unrolled_converges_to_the_closed_form_as_k_grows():
    with jax.enable_x64(True):
        cf = closed_form.ridge(per_feature=True)
        lr = 1.0 / float(jnp.linalg.eigvalsh(cf.inner_hessian(cf.outer_init))[-1])
        exact = cf.hypergradient(cf.outer_init)
        errors = []
        for k in (5, 20, 80):
            out = cf.solve(bilevel.Unrolled(scan_inner=True), optax.sgd(lr), cf.inner_batches(k))
            errors.append(float(jnp.linalg.norm(out.hypergrad - exact) / jnp.linalg.norm(exact)))
        assert errors[0] > errors[1] > errors[2], errors
        assert errors[2] < 1e-6, errors


def test_truncated_unrolled_is_the_exact_gradient_of_the_truncated_map():
    with jax.enable_x64(True):
        cf, inner_opt = closed_form.logistic(), OPTIMIZERS["momentum"]
        batches = cf.inner_batches(5)
        out = cf.solve(bilevel.Unrolled(truncate=2), inner_opt, batches)
        expected = jax.grad(_k_step_objective(cf, inner_opt, batches, skip=3))(cf.outer_init)
        np.testing.assert_allclose(out.hypergrad, expected, rtol=1e-12)
        full = cf.solve(bilevel.Unrolled(), inner_opt, batches)
        assert not np.allclose(out.hypergrad, full.hypergrad, rtol=1e-3)
        np.testing.assert_allclose(out.inner_params, full.inner_params, rtol=1e-13)


@pytest.mark.parametrize(
    "solver, opt_name",
    [
        (bilevel.Unrolled(remat=True), "momentum"),
        (bilevel.Unrolled(store_linearization=True), "momentum"),
        pytest.param(bilevel.Unrolled(remat=True), "adamw", marks=pytest.mark.slow),
        pytest.param(
            bilevel.Unrolled(remat=True, store_linearization=True, scan_inner=True),
            "adamw",
            marks=pytest.mark.slow,
        ),
        pytest.param(bilevel.Unrolled(scan_inner=True), "adamw", marks=pytest.mark.slow),
        pytest.param(bilevel.Unrolled(remat=True, scan_inner=True), "adamw", marks=pytest.mark.slow),
        (bilevel.UnrolledForward(), "momentum"),
        (bilevel.UnrolledForward(directions_per_pass=2), "momentum"),
    ],
)
def test_every_unrolled_form_gives_the_same_gradient(solver, opt_name):
    inner_opt = OPTIMIZERS[opt_name]
    with jax.enable_x64(True), _promotion(inner_opt):
        cf = closed_form.logistic()
        batches = cf.inner_batches(5)
        reference = cf.solve(bilevel.Unrolled(), inner_opt, batches)
        out = cf.solve(solver, inner_opt, batches)
        np.testing.assert_allclose(out.hypergrad, reference.hypergrad, rtol=1e-12)
        np.testing.assert_allclose(out.inner_params, reference.inner_params, rtol=1e-13)


def test_unrolled_forward_rejects_a_non_positive_pass_size():
    with pytest.raises(bilevel.SolverConfigError, match="directions_per_pass must be positive, got 0"):
        bilevel.UnrolledForward(directions_per_pass=0)


def _conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _fuse(leader, images):
    return jax.nn.sigmoid(_conv(jax.nn.relu(_conv(images, leader[0])), leader[1]))


def _conv_problem():
    """A small fusion-then-segmentation problem: a 2-conv leader, a 2-conv follower, 4 classes."""

    def logits(follower, leader, images):
        return _conv(jax.nn.relu(_conv(_fuse(leader, images), follower[0])), follower[1])

    def inner(follower, leader, batch):
        ce = optax.softmax_cross_entropy_with_integer_labels(logits(follower, leader, batch["x"]), batch["y"])
        return jnp.mean(ce)

    def outer(follower, leader, batch):
        return inner(follower, leader, batch) + 0.1 * jnp.mean(leader[1] ** 2)

    keys = jax.random.split(jax.random.key(0), 4)
    shapes = [(3, 3, 2, 8), (3, 3, 8, 1), (3, 3, 1, 8), (1, 1, 8, 4)]
    w = [0.3 * jax.random.normal(k, s, jnp.float32) for k, s in zip(keys, shapes, strict=True)]
    return bilevel.Problem(inner, outer), w[2:], w[:2]


def _conv_batches(k):
    x = jax.random.uniform(jax.random.key(1), (k, 4, 32, 32, 2), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (k, 4, 32, 32), 0, 4, jnp.int32)
    return {"x": x, "y": y}


@functools.cache
def _compiled_hypergradient(solver, k):
    problem, follower, leader = _conv_problem()
    inner_opt = optax.sgd(0.1, momentum=0.9)
    batches = _conv_batches(k + 1)

    def hypergrad(follower, leader, batches):
        inner_batches = inner_loop.batch_at(batches, slice(0, k))
        outer_batch = inner_loop.batch_at(batches, k)
        args = (follower, leader, inner_opt, inner_opt.init(follower), inner_batches, outer_batch)
        return bilevel.hypergradient(problem, solver, *args).hypergrad

    return jax.jit(hypergrad).lower(follower, leader, batches).compile(), (follower, leader, batches)


@pytest.mark.slow
def test_unrolled_compiled_temporaries_do_not_grow_with_k():
    """The reverse pass keeps per step only the step's inputs and gradient, not its activations.

    Before the recomputation was ordered after the cotangent, K = 20 needed about 15x K = 1.
    """
    temporaries = {}
    for remat in (False, True):
        for k in (1, 20):
            compiled, _ = _compiled_hypergradient(bilevel.Unrolled(remat=remat), k)
            temporaries[remat, k] = compiled.memory_analysis().temp_size_in_bytes
    for remat in (False, True):
        assert temporaries[remat, 20] <= 1.3 * temporaries[remat, 1], temporaries


def test_remat_stored_linearisation_and_reuse_give_the_same_hypergradient_on_a_conv_problem():
    """Equal to float32 rounding: the compiled programs fuse (and so round) differently."""
    solvers = (
        bilevel.Unrolled(),
        bilevel.Unrolled(remat=True),
        bilevel.Unrolled(store_linearization=True),
        bilevel.Unrolled(reuse_outer_work=True),
    )
    outputs = []
    for solver in solvers:
        compiled, args = _compiled_hypergradient(solver, 4)
        outputs.append(compiled(*args))
    for other in outputs[1:]:
        for leaf, reference in zip(jax.tree.leaves(other), jax.tree.leaves(outputs[0]), strict=True):
            np.testing.assert_allclose(leaf, reference, rtol=0, atol=1e-5 * np.max(np.abs(reference)))
            assert np.all(np.isfinite(leaf)) and np.any(leaf != 0)


def test_reuse_outer_work_computes_each_steps_leader_forward_once():
    """The reverse pass recomputes every step's gradient; with ``reuse_outer_work`` the leader's
    forward pass in it is the forward sweep's own, so the program does K leader forwards fewer."""
    k = 4

    def flops(compiled):
        return compiled.cost_analysis()["flops"]

    _, leader, batches = _compiled_hypergradient(bilevel.Unrolled(), k)[1]
    one_forward = flops(jax.jit(_fuse).lower(leader, batches["x"][0]).compile())
    saved = flops(_compiled_hypergradient(bilevel.Unrolled(), k)[0]) - flops(
        _compiled_hypergradient(bilevel.Unrolled(reuse_outer_work=True), k)[0]
    )
    assert 0.9 * k * one_forward <= saved <= 1.1 * k * one_forward, (saved, one_forward)
    with pytest.raises(bilevel.SolverConfigError, match="reuse_outer_work.*store_linearization"):
        bilevel.Unrolled(reuse_outer_work=True, store_linearization=True)
