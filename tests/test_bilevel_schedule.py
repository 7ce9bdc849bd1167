"""bilevel.schedule: ordering by data dependency changes no value and no derivative."""

import jax
import jax.numpy as jnp
import numpy as np

from bilevel import schedule


def test_after_returns_the_values_unchanged_in_their_dtypes():
    values = {"x": jnp.array([1.5, -2.0, 3.25], jnp.float32), "labels": jnp.array([0, 3, 1], jnp.int32)}
    anchor = (jnp.array([[4.0, 5.0]], jnp.float32), jnp.array([7], jnp.int32))
    out = jax.jit(schedule.after)(values, anchor)
    for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(values), strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_after_keeps_the_dependency_through_compilation():
    # 0 * anchor must survive XLA's simplifications, or nothing is ordered: a NaN anchor shows it.
    out = jax.jit(schedule.after)(jnp.ones(4), jnp.array([jnp.nan, 1.0, 2.0]))
    assert np.all(np.isnan(out))


def test_materialize_changes_no_value_and_no_gradient():
    x = jnp.array([[jnp.inf, -0.0, 2.5], [jnp.nan, 1.0, -3.0]])
    np.testing.assert_array_equal(jax.jit(schedule.materialize)(x), x)
    y = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(jax.grad(lambda y: jnp.sum(schedule.materialize(y) ** 2))(y), 2 * y)


def test_materialize_computes_an_element_wise_result_once():
    # Nine shifted copies summed (8 adds per element), read by three transposes: fused into each
    # reader, the sum is computed three times, and XLA's cost analysis counts each time.
    def program(store):
        def f(x):
            total = sum(x[i : i + 64, j : j + 64] for i in range(3) for j in range(3))
            total = schedule.materialize(total) if store else total
            return total.T, (2 * total).T, (3 * total).T

        compiled = jax.jit(f).lower(jax.ShapeDtypeStruct((66, 66), jnp.float32)).compile()
        return compiled.cost_analysis()["flops"]

    assert program(store=False) - program(store=True) >= 8 * 64 * 64


def test_checkpoint_has_the_values_and_gradients_of_the_function():
    def f(w, x):
        return jnp.sum(jnp.tanh(x @ w) ** 2)

    w = jax.random.normal(jax.random.key(0), (3, 2))
    x = jax.random.normal(jax.random.key(1), (5, 3))
    np.testing.assert_allclose(schedule.checkpoint(f)(w, x), f(w, x), rtol=1e-6)
    for got, want in zip(
        jax.grad(schedule.checkpoint(f), (0, 1))(w, x), jax.grad(f, (0, 1))(w, x), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
