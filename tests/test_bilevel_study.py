"""bilevel.study: solver specs, the comparison at one point, references and the IFT verdict."""

import jax
import jax.numpy as jnp
import optax
import pytest

import bilevel
from bilevel import closed_form, study

SGD = optax.sgd(0.1)


def _call(cf, inner, k=1, opt=SGD):
    return bilevel.SolverCall(
        cf.problem, inner, cf.outer_init, opt, opt.init(inner), cf.inner_batches(k), cf.outer_batch
    )


def test_specs_split_solvers_from_their_options_and_read_values():
    specs = bilevel.parse_specs(
        "first_order,implicit_cg:max_iter=20,tol=1e-5,solve_loop=while,unrolled:remat=true"
    )
    assert specs == [
        ("first_order", "first_order", {}),
        (
            "implicit_cg:max_iter=20,tol=1e-5,solve_loop=while",
            "implicit_cg",
            {"max_iter": 20, "tol": 1e-5, "solve_loop": "while"},
        ),
        ("unrolled:remat=true", "unrolled", {"remat": True}),
    ]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("first_order,,unrolled", "empty entry"),
        ("max_iter=3", "not key=value after a solver name"),
        ("implicit_cg:max_iter", "not key=value"),
        ("implicit_cgg", "unknown solver 'implicit_cgg'"),
        ("implicit_cg:maxiter=3", "'implicit_cg:maxiter=3': unknown option(s) maxiter"),
    ],
)
def test_bad_specs_raise_a_config_error_naming_them(text, named):
    with pytest.raises(bilevel.SolverConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        bilevel.make_solvers(bilevel.parse_specs(text))


def test_compare_reports_accuracy_diagnostics_and_cost_per_solver():
    with jax.enable_x64(True):
        cf = closed_form.quadratic()
        call = _call(cf, cf.inner_solution(cf.outer_init))
        solvers = bilevel.make_solvers(
            bilevel.parse_specs("implicit_cg:max_iter=10,tol=1e-12,implicit_cg:max_iter=1")
        )
        rows = study.compare(
            call, solvers, cf.hypergradient(cf.outer_init), rounds=2, progress=lambda _: None
        )
        by = {r["solver"]: r for r in rows}
        assert list(by) == ["first_order", "implicit_cg:max_iter=10,tol=1e-12", "implicit_cg:max_iter=1"]
        exact, short = by["implicit_cg:max_iter=10,tol=1e-12"], by["implicit_cg:max_iter=1"]
        assert exact["cosine"] > 1 - 1e-12 and exact["rel_error"] < 1e-8 and exact["reason"] == "ok"
        assert short["failed"] and short["reason"] == "iteration limit" and short["rel_error"] > 1e-3
        assert by["first_order"]["time_ratio"] == 1.0
        assert all(r["time_ms"] > 0 and r["temp_mib"] >= 0 for r in rows)


def test_the_converged_reference_is_the_exact_hypergradient_from_a_point_far_from_the_follower_optimum():
    with jax.enable_x64(True):
        cf = closed_form.logistic()
        ref, info = study.reference(
            _call(cf, cf.inner_init, k=2),
            "converged:grad_tol=1e-10,max_steps=5000,tol=1e-12",
            key=jax.random.key(0),
            progress=lambda _: None,
        )
        exact = cf.hypergradient(cf.outer_init)
        assert info["descent_grad_norm"] <= 1e-10 and info["reason"] == "ok"
        assert float(jnp.linalg.norm(ref - exact) / jnp.linalg.norm(exact)) < 1e-7
        unrolled, info = study.reference(
            _call(cf, cf.inner_init), "unrolled", key=jax.random.key(0), progress=lambda _: None
        )
        assert info["reference"] == "unrolled" and info["iterations"] == 1
        with pytest.raises(bilevel.SolverConfigError, match="unknown option.*grad_tl.*valid: grad_tol"):
            study.reference(_call(cf, cf.inner_init), "converged:grad_tl=1", key=jax.random.key(0))


def test_the_verdict_says_whether_ift_applies():
    with jax.enable_x64(True):
        cf = closed_form.quadratic()
        at_optimum = _call(cf, cf.inner_solution(cf.outer_init))
        report = study.curvature_report(
            at_optimum, at_optimum.inner_params, num_iter=6, grad_tol=1e-8, key=jax.random.key(0)
        )
        eigenvalues = jnp.linalg.eigvalsh(cf.inner_hessian(cf.outer_init))
        assert report["verdict"].startswith("IFT's assumptions hold: the follower is stationary")
        assert abs(report["smallest"] - float(eigenvalues[0])) < 1e-8 * float(eigenvalues[-1])
        away = study.curvature_report(
            at_optimum, cf.inner_init, num_iter=6, grad_tol=1e-8, key=jax.random.key(0)
        )
        assert away["verdict"].startswith("IFT's assumptions do not hold: the follower is not stationary")

        def inner(y, x, batch):
            return 0.5 * jnp.sum(batch * jnp.array([1.0, -1.0]) * y**2) - x @ y

        problem = bilevel.Problem(inner, lambda y, x, batch: jnp.sum(y**2))
        y = jnp.array([0.5, -0.5])
        saddle = bilevel.SolverCall(problem, y, y, SGD, SGD.init(y), jnp.ones((1, 2)), jnp.ones(2))
        report = study.curvature_report(
            saddle, jnp.zeros(2), num_iter=2, grad_tol=1e-8, key=jax.random.key(0)
        )
        assert "not positive definite (smallest eigenvalue -1" in report["verdict"]


def test_cosine_stays_within_one_where_rounding_would_pass_it():
    x = {"a": jnp.full((7,), 0.1, jnp.float32), "b": jnp.full((3, 3), 1 / 3, jnp.float32)}
    raw = bilevel.tree.vdot(x, x) / (bilevel.tree.norm(x) * bilevel.tree.norm(x))
    assert float(bilevel.tree.cosine(x, x)) <= 1.0 and abs(float(raw) - 1.0) < 1e-6
    assert float(bilevel.tree.cosine(x, jax.tree.map(jnp.negative, x))) == pytest.approx(-1.0)
