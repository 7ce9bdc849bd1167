"""Generic bi-level optimisation in JAX: interchangeable, verified hypergradient solvers.

A :class:`Problem` is two pure losses of pytrees; a solver (chosen by :func:`make_solver` or built
directly) runs the follower's K optimiser steps and returns the leader's hypergradient with uniform
diagnostics; :func:`init` / :func:`step` are the pure, jit-able outer loop; :func:`hypergradient`
evaluates any solver at a point; :mod:`bilevel.problems` holds closed-form test problems.
This package knows nothing about images and never imports ``fuse4seg_jax``.
"""

from bilevel.errors import SolverConfigError
from bilevel.outer_loop import BilevelState, hypergradient, init, step
from bilevel.problem import Problem
from bilevel.registry import make_solver, register_solver, solver_names, solver_options
from bilevel.solvers import (
    DIAGNOSTIC_KEYS,
    FiniteDifference,
    FirstOrder,
    Implicit,
    Joint,
    Solver,
    SolverOutput,
    Unrolled,
    UnrolledForward,
)

__all__ = [
    "DIAGNOSTIC_KEYS",
    "BilevelState",
    "FiniteDifference",
    "FirstOrder",
    "Implicit",
    "Joint",
    "Problem",
    "Solver",
    "SolverConfigError",
    "SolverOutput",
    "Unrolled",
    "UnrolledForward",
    "hypergradient",
    "init",
    "make_solver",
    "register_solver",
    "solver_names",
    "solver_options",
    "step",
]
