"""The outer loop: Stackelberg equilibrium, one compilation, sharded inputs, uniform diagnostics."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec

import bilevel
from bilevel import closed_form

INNER_OPT = optax.sgd(0.4)
OUTER_OPT = optax.sgd(0.3)
STEP = jax.jit(bilevel.step, static_argnames=("problem", "solver", "inner_opt", "outer_opt"))


def _play(cf, solver, steps, k, inner_opt=INNER_OPT, outer_opt=OUTER_OPT):
    """Run the outer loop on full batches from ``bilevel.init(..., solver=solver)``; return the
    final state and the diagnostics of every step."""
    state = bilevel.init(cf.inner_init, cf.outer_init, inner_opt, outer_opt, solver=solver)
    batches, history = cf.inner_batches(k), []
    for _ in range(steps):
        state, diagnostics = STEP(
            state,
            batches,
            cf.outer_batch,
            problem=cf.problem,
            solver=solver,
            inner_opt=inner_opt,
            outer_opt=outer_opt,
        )
        history.append(diagnostics)
    return state, history


@pytest.mark.parametrize(
    "solver",
    [bilevel.Implicit(linear_solver=bilevel.CG(max_iter=4)), bilevel.Unrolled()],
    ids=["implicit", "unrolled"],
)
def test_outer_loop_reaches_the_stackelberg_equilibrium(solver):
    """Follower: gradient steps with lr 0.4 on Hessian 2 I contract by 0.2, so K = 10 steps leave
    it 1e-7 off its best response and the unrolled K-step derivative 1e-7 off the implicit one;
    150 leader steps contract the leader's error below 1e-6."""
    with jax.enable_x64(True):
        cf = closed_form.stackelberg()
        state, history = _play(cf, solver, steps=150, k=10)
        np.testing.assert_allclose(state.outer_params, cf.equilibrium, atol=1e-6)
        np.testing.assert_allclose(state.inner_params, cf.inner_solution(cf.equilibrium), atol=1e-6)
        assert int(state.step) == 150
        assert not any(bool(d["failed"]) for d in history)
        assert float(history[-1]["hypergrad_norm"]) < 1e-6


def test_first_order_converges_elsewhere_and_the_report_says_where():
    with jax.enable_x64(True):
        cf = closed_form.stackelberg()
        state, _ = _play(cf, bilevel.FirstOrder(), steps=150, k=10)
        np.testing.assert_allclose(state.outer_params, cf.first_order_point, atol=1e-6)
        assert float(jnp.linalg.norm(cf.first_order_point - cf.equilibrium)) > 0.3
        # At the first-order point the true hypergradient does not vanish: it is not a solution.
        assert float(jnp.linalg.norm(cf.hypergradient(state.outer_params))) > 0.1


def test_outer_step_compiles_once_and_is_sharding_invariant():
    with jax.enable_x64(True):
        cf = closed_form.ridge(n_train=16, n_val=8)
        solver, k = bilevel.make_solver("implicit_cg", max_iter=3), 2
        step = STEP
        state = bilevel.init(cf.inner_init, cf.outer_init, INNER_OPT, OUTER_OPT)
        batches = cf.inner_batches(k)
        kwargs = {
            "problem": cf.problem,
            "solver": solver,
            "inner_opt": INNER_OPT,
            "outer_opt": OUTER_OPT,
        }

        mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
        inner_spec = NamedSharding(mesh, PartitionSpec(None, "data"))
        outer_spec = NamedSharding(mesh, PartitionSpec("data"))
        sharded_batches = jax.device_put(batches, inner_spec)
        sharded_outer = jax.device_put(cf.outer_batch, outer_spec)

        plain_state = state
        sharded_state = jax.device_put(state, NamedSharding(mesh, PartitionSpec()))
        # jit's cache is shared by every jit of the same function: count new entries.
        compiled_before = step._cache_size()
        for _ in range(3):
            plain_state, plain_diag = step(plain_state, batches, cf.outer_batch, **kwargs)
        assert step._cache_size() == compiled_before + 1
        for _ in range(3):
            sharded_state, sharded_diag = step(sharded_state, sharded_batches, sharded_outer, **kwargs)
        # One more compilation for the new input shardings (replicated state, sharded data).
        assert step._cache_size() == compiled_before + 2
        # Sharded reductions may sum in another order: equal up to float64 rounding.
        for plain, sharded in zip(
            jax.tree.leaves((plain_state, plain_diag)),
            jax.tree.leaves((sharded_state, sharded_diag)),
            strict=True,
        ):
            np.testing.assert_allclose(np.asarray(sharded), np.asarray(plain), rtol=1e-12, atol=1e-15)


def test_every_solver_reports_the_same_diagnostics_and_passes_aux_through():
    with jax.enable_x64(True):
        cf = closed_form.quadratic()

        def inner(y, x, batch):
            return cf.problem.inner_loss(y, x, batch), {"y_mean": jnp.mean(y)}

        def outer(y, x, batch):
            return cf.problem.outer_loss(y, x, batch), jnp.sum(x)

        problem = bilevel.Problem(inner, outer, has_aux=True)
        y0 = cf.inner_solution(cf.outer_init)
        for name in bilevel.solver_names():
            out = bilevel.hypergradient(
                problem,
                bilevel.make_solver(name),
                y0,
                cf.outer_init,
                INNER_OPT,
                INNER_OPT.init(y0),
                cf.inner_batches(2),
                cf.outer_batch,
            )
            assert tuple(out.diagnostics) == bilevel.DIAGNOSTIC_KEYS, name
            assert all(v.shape == () for v in out.diagnostics.values()), name
            assert out.diagnostics["failed"].dtype == jnp.bool_, name
            assert out.diagnostics["iterations"].dtype == jnp.int32, name
            assert float(out.outer_aux) == float(jnp.sum(cf.outer_init)), name
            assert set(out.inner_aux) == {"y_mean"}, name
            np.testing.assert_allclose(
                out.diagnostics["outer_loss"],
                cf.problem.outer_loss(out.inner_params, cf.outer_init, cf.outer_batch),
                rtol=1e-12,
            )


def test_step_returns_the_losses_aux_with_the_diagnostics():
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        cf = closed_form.quadratic()
        problem = bilevel.Problem(
            lambda y, x, b: (cf.problem.inner_loss(y, x, b), {"inner": jnp.sum(y)}),
            lambda y, x, b: (cf.problem.outer_loss(y, x, b), {"outer": jnp.sum(x)}),
            has_aux=True,
        )
        state = bilevel.init(cf.inner_init, cf.outer_init, INNER_OPT, INNER_OPT)
        _, diagnostics = bilevel.step(
            state,
            cf.inner_batches(2),
            cf.outer_batch,
            problem=problem,
            solver=bilevel.make_solver("first_order"),
            inner_opt=INNER_OPT,
            outer_opt=INNER_OPT,
        )
        assert set(bilevel.DIAGNOSTIC_KEYS) | {"inner_aux", "outer_aux"} == set(diagnostics)
        assert float(diagnostics["outer_aux"]["outer"]) == float(jnp.sum(cf.outer_init))
