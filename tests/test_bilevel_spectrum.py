"""The follower Hessian's extreme eigenvalues by Lanczos, against dense eigendecompositions, in float64."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bilevel
from bilevel import closed_form

KEY = jax.random.key(0)


def _quadratic_loss(matrix):
    """``f(w, x) = w^T A w / 2 - x^T w`` on a pytree ``w = {"a": (3,), "b": (2, 2)}`` (7 numbers)."""

    def loss(w, x):
        flat = jnp.concatenate([w["a"], w["b"].ravel()])
        return 0.5 * flat @ matrix @ flat - x @ flat

    return loss


def _symmetric(eigenvalues, seed=0):
    """A dense symmetric matrix with the given eigenvalues and random eigenvectors."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues), len(eigenvalues))))
    return q @ np.diag(eigenvalues) @ q.T


def _point():
    return {"a": jnp.ones(3), "b": jnp.full((2, 2), -0.5)}, jnp.arange(7.0)


@pytest.mark.parametrize(
    "make", [closed_form.ridge, lambda: closed_form.ridge(per_feature=True), closed_form.quadratic]
)
def test_closed_form_hessian_extremes_match_a_dense_eigendecomposition_to_1e8(make):
    with jax.enable_x64(True):
        cf = make()
        exact = np.linalg.eigvalsh(np.asarray(cf.inner_hessian(cf.outer_init)))
        inner = cf.inner_solution(cf.outer_init)
        # num_iter above the dimension is capped at it.
        est = bilevel.inner_hessian_extremes(
            cf.problem, inner, cf.outer_init, cf.inner_batch, num_iter=inner.size + 3, key=KEY
        )
        np.testing.assert_allclose([est.smallest, est.largest], exact[[0, -1]], rtol=1e-8)
        assert int(est.iterations) == inner.size
        assert max(est.smallest_residual, est.largest_residual) <= 1e-10 * exact[-1]


@pytest.mark.parametrize("loop", ["python", "while"])
def test_indefinite_hessian_shows_as_negative_smallest_eigenvalue(loop):
    with jax.enable_x64(True):
        eigenvalues = [-3.0, -1.0, -0.25, 0.5, 2.0, 2.5, 6.0]
        loss = _quadratic_loss(jnp.asarray(_symmetric(eigenvalues)))
        inner, outer = _point()
        lanczos = functools.partial(bilevel.extreme_eigenvalues, loss, num_iter=7, loop=loop)
        for est in (lanczos(inner, outer, key=KEY), jax.jit(lanczos)(inner, outer, key=KEY)):
            np.testing.assert_allclose([est.smallest, est.largest], [-3.0, 6.0], rtol=1e-8)
            assert int(est.iterations) == 7


@pytest.mark.parametrize("loop", ["python", "while"])
@pytest.mark.parametrize(
    ("eigenvalues", "distinct"),
    [
        ([2.5] * 7, 1),  # a multiple of the identity: v is an eigenvector, T is 1 x 1
        ([0.0] * 5 + [1.5, 4.0], 3),  # rank two
        ([-1.0, -1.0, 3.0, 3.0, 3.0, 7.0, 7.0], 3),
    ],
)
def test_invariant_subspace_stops_lanczos_with_the_exact_extremes(loop, eigenvalues, distinct):
    with jax.enable_x64(True):
        loss = _quadratic_loss(jnp.asarray(_symmetric(eigenvalues)))
        est = bilevel.extreme_eigenvalues(loss, *_point(), num_iter=7, key=KEY, loop=loop)
        # The Krylov space of a random start has one dimension per distinct eigenvalue.
        assert int(est.iterations) == distinct
        assert all(np.isfinite(value) for value in est)
        np.testing.assert_allclose(
            [est.smallest, est.largest], [min(eigenvalues), max(eigenvalues)], rtol=1e-8, atol=1e-12
        )
        assert max(est.smallest_residual, est.largest_residual) <= 1e-12


def test_fewer_steps_bracket_the_spectrum_and_bound_their_error():
    with jax.enable_x64(True):
        eigenvalues = np.array([-3.0, -1.0, -0.25, 0.5, 2.0, 2.5, 6.0])
        loss = _quadratic_loss(jnp.asarray(_symmetric(eigenvalues, seed=1)))
        estimates = [bilevel.extreme_eigenvalues(loss, *_point(), num_iter=m, key=KEY) for m in range(1, 8)]
        smallest = np.array([est.smallest for est in estimates])
        largest = np.array([est.largest for est in estimates])
        # Nested Krylov spaces: the Ritz values widen monotonically towards the true extremes.
        assert np.all(np.diff(smallest) <= 1e-12) and np.all(np.diff(largest) >= -1e-12)
        assert np.all(smallest >= -3.0 - 1e-12) and np.all(largest <= 6.0 + 1e-12)
        assert smallest[2] > -3.0 + 1e-6, "three steps should not be exact yet"
        for est in estimates:
            # Some eigenvalue of H lies within the Ritz residual of each Ritz value.
            for value, residual in (
                (est.smallest, est.smallest_residual),
                (est.largest, est.largest_residual),
            ):
                assert np.min(np.abs(eigenvalues - float(value))) <= float(residual) + 1e-12


@pytest.mark.parametrize(("options", "named"), [({"num_iter": 0}, "num_iter"), ({"loop": "for"}, "for")])
def test_bad_options_raise_a_config_error_naming_them(options, named):
    loss = _quadratic_loss(jnp.eye(7))
    with pytest.raises(bilevel.SolverConfigError, match=named):
        bilevel.extreme_eigenvalues(loss, *_point(), key=KEY, **{"num_iter": 3, **options})
