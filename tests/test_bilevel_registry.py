"""Solvers by name: every name builds, and mistakes are clear configuration errors."""

import pytest

import bilevel


def test_every_name_builds_a_hashable_solver():
    for name in bilevel.solver_names():
        solver = bilevel.make_solver(name)
        assert isinstance(solver, bilevel.Solver)
        assert hash(solver) == hash(bilevel.make_solver(name))
    assert bilevel.make_solver("implicit_neumann").linear_solver == "neumann"
    assert bilevel.make_solver("unrolled", truncate=3, remat=True) == bilevel.Unrolled(truncate=3, remat=True)


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(bilevel.SolverConfigError, match="unknown solver 'implict_cg'") as info:
        bilevel.make_solver("implict_cg")
    assert isinstance(info.value, ValueError)
    for name in bilevel.solver_names():
        assert name in str(info.value)


def test_unknown_option_lists_the_valid_options():
    with pytest.raises(bilevel.SolverConfigError, match="max_iters") as info:
        bilevel.make_solver("implicit_cg", max_iters=5)
    assert "max_iter, tol, damping" in str(info.value)
    # The name fixes the linear solver; it is not an option of implicit_cg.
    with pytest.raises(bilevel.SolverConfigError, match="linear_solver"):
        bilevel.make_solver("implicit_cg", linear_solver="neumann")


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("implicit_cg", {"max_iter": 0}, "max_iter must be positive"),
        ("implicit_cg", {"damping": -1.0}, "damping must be >= 0"),
        ("implicit_cg", {"hessian_batch": "first"}, "hessian_batch='first' is not one of"),
        ("implicit_cg", {"solve_loop": "scan"}, "solve_loop='scan' is not one of python, while"),
        ("unrolled", {"truncate": 0}, "truncate must be positive"),
        ("finite_difference", {"eps_scale": 0.0}, "eps_scale must be positive"),
    ],
)
def test_invalid_option_values_are_rejected(name, options, message):
    with pytest.raises(bilevel.SolverConfigError, match=message):
        bilevel.make_solver(name, **options)
