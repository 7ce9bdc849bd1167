"""Solvers by name: every name builds, each takes exactly its options, mistakes are clear errors."""

import pytest

import bilevel


def test_every_name_builds_a_hashable_solver():
    for name in bilevel.solver_names():
        solver = bilevel.make_solver(name)
        assert isinstance(solver, bilevel.Solver)
        assert hash(solver) == hash(bilevel.make_solver(name))
    assert bilevel.make_solver("implicit_neumann").linear_solver == bilevel.Neumann()
    assert bilevel.make_solver("unrolled", truncate=3, remat=True) == bilevel.Unrolled(truncate=3, remat=True)


def test_implicit_names_combine_the_linear_solvers_options_with_implicits():
    ift = {"scan_inner": False, "damping": 0.0, "hessian_batch": "last"}
    implicit = {**ift, "warm_start": False}
    iterative = {"max_iter": 10, "tol": 1e-4, "solve_loop": "python"}
    assert bilevel.solver_options("implicit_cg") == {**iterative, **implicit}
    assert bilevel.solver_options("implicit_neumann") == {"step_size": 0.01, **iterative, **implicit}
    assert bilevel.solver_options("implicit_fixed_point") == {**iterative, **ift}
    assert bilevel.solver_options("implicit_jaxopt") == {"max_iter": 10, "tol": 1e-4, **implicit}
    # the warm-started names are the same options with other defaults
    warm = {**iterative, **implicit, "max_iter": 2, "warm_start": True}
    assert bilevel.solver_options("implicit_cg_warm") == warm
    assert bilevel.make_solver("implicit_cg_warm", max_iter=5) == bilevel.Implicit(
        linear_solver=bilevel.CG(max_iter=5), warm_start=True
    )
    with pytest.raises(bilevel.SolverConfigError, match="unknown default.* warm_strat"):
        bilevel.implicit_with(bilevel.CG, warm_strat=True)
    assert bilevel.solver_options("unrolled") == {
        "scan_inner": False,
        "truncate": None,
        "remat": False,
        "store_linearization": False,
        "reuse_outer_work": False,
    }
    solver = bilevel.make_solver("implicit_neumann", step_size=0.2, max_iter=3, damping=0.5)
    assert solver == bilevel.Implicit(linear_solver=bilevel.Neumann(step_size=0.2, max_iter=3), damping=0.5)


def test_every_option_is_a_plain_config_value():
    for name in bilevel.solver_names():
        for option, default in bilevel.solver_options(name).items():
            assert default is None or isinstance(default, int | float | str | bool | tuple), (name, option)


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(bilevel.SolverConfigError, match="unknown solver 'implict_cg'") as info:
        bilevel.make_solver("implict_cg")
    assert isinstance(info.value, ValueError)
    for name in bilevel.solver_names():
        assert name in str(info.value)


def test_unknown_option_lists_the_valid_options():
    with pytest.raises(bilevel.SolverConfigError, match="max_iters") as info:
        bilevel.make_solver("implicit_cg", max_iters=5)
    assert "max_iter, tol, solve_loop, scan_inner, damping, hessian_batch" in str(info.value)
    # The name fixes the linear solver; it is not an option of implicit_cg.
    with pytest.raises(bilevel.SolverConfigError, match="linear_solver"):
        bilevel.make_solver("implicit_cg", linear_solver="neumann")
    # Options that do not apply to a name are not among its options.
    with pytest.raises(bilevel.SolverConfigError, match="step_size"):
        bilevel.make_solver("implicit_cg", step_size=0.1)
    with pytest.raises(bilevel.SolverConfigError, match="solve_loop"):
        bilevel.make_solver("implicit_jaxopt", solve_loop="while")


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("implicit_cg", {"max_iter": 0}, "max_iter must be positive"),
        ("implicit_cg", {"damping": -1.0}, "damping must be >= 0"),
        ("implicit_cg", {"hessian_batch": "first"}, "hessian_batch='first' is not one of"),
        ("implicit_cg", {"solve_loop": "scan"}, "solve_loop='scan' is not one of python, while"),
        ("implicit_neumann", {"step_size": 0.0}, "step_size must be positive"),
        ("implicit_fixed_point", {"tol": -1.0}, "tol must be positive"),
        ("implicit_fixed_point", {"solve_loop": "scan"}, "solve_loop='scan' is not one of python, while"),
        ("implicit_jaxopt", {"max_iter": 0}, "max_iter must be positive"),
        ("implicit_neumann_warm", {"step_size": -1.0}, "step_size must be positive"),
        ("unrolled", {"truncate": 0}, "truncate must be positive"),
        ("finite_difference", {"eps_scale": 0.0}, "eps_scale must be positive"),
    ],
)
def test_invalid_option_values_are_rejected(name, options, message):
    with pytest.raises(bilevel.SolverConfigError, match=message):
        bilevel.make_solver(name, **options)


def test_a_spec_names_one_solver_with_its_options():
    solver = bilevel.solver_from_spec("implicit_neumann_warm:max_iter=3,step_size=0.1")
    assert solver == bilevel.make_solver("implicit_neumann_warm", max_iter=3, step_size=0.1)
    with pytest.raises(bilevel.SolverConfigError, match="'first_order,unrolled' names 2 solvers"):
        bilevel.solver_from_spec("first_order,unrolled")
    with pytest.raises(bilevel.SolverConfigError, match="unknown solver 'cgg'"):
        bilevel.solver_from_spec("cgg")
