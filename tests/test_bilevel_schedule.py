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
    # The anchor's sum must survive XLA's simplifications, or nothing is ordered.
    compiled = jax.jit(schedule.after).lower(jnp.ones(4), jnp.ones(3)).compile().as_text()
    assert "reduce" in compiled


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
