"""Generic bi-level optimisation in JAX: interchangeable, verified hypergradient solvers.

A :class:`Problem` is two pure losses of pytrees; a solver (chosen by :func:`make_solver` or built
directly) runs the follower's K optimiser steps and returns the leader's hypergradient with uniform
diagnostics; :func:`init` / :func:`step` are the pure, jit-able outer loop; :func:`hypergradient`
evaluates any solver at a point; :mod:`bilevel.closed_form` holds problems with closed-form
answers. Solvers compose: :class:`Implicit` takes any linear solver (:class:`CG`, :class:`Neumann`,
:class:`JaxoptCG` or a user's callable, from zero or warm-started), and :func:`register_solver`
makes a solver defined anywhere choosable by name. A solver may carry state from one outer step to
the next (:meth:`Solver.init_state`; SOBA's linear-system solution, F2SA's and BOME's follower copies).
:func:`extreme_eigenvalues` (Lanczos on Hessian-vector products) says whether the follower's
Hessian is positive definite and how large it is; :mod:`bilevel.study` compares solvers at one
point against a reference, which may be the implicit hypergradient at a follower minimised by
:func:`bilevel.trust_region.minimise` (trust-region Newton-CG); :mod:`bilevel.trajectory` records
the outer loop step by step for convergence studies. See ``docs/solvers.md``.
This package knows nothing about images and never imports ``fuse4seg_jax``.
"""

from bilevel import study, trajectory, trust_region
from bilevel.errors import SolverConfigError
from bilevel.linear_solve import CG, REASONS, JaxoptCG, LinearSolver, Neumann, SolveResult
from bilevel.outer_loop import BilevelState, hypergradient, init, step
from bilevel.problem import Problem
from bilevel.registry import (
    implicit_with,
    make_solver,
    make_solvers,
    parse_specs,
    register_solver,
    solver_from_spec,
    solver_names,
    solver_options,
)
from bilevel.solvers import (
    BOME,
    DIAGNOSTIC_KEYS,
    F2SA,
    SOBA,
    FiniteDifference,
    FirstOrder,
    Implicit,
    ImplicitFixedPoint,
    Joint,
    OuterTerms,
    Solver,
    SolverCall,
    SolverOutput,
    Unrolled,
    UnrolledForward,
    solver_output,
)
from bilevel.spectrum import EigenEstimate, extreme_eigenvalues, inner_hessian_extremes

__all__ = [
    "BOME",
    "CG",
    "DIAGNOSTIC_KEYS",
    "F2SA",
    "SOBA",
    "BilevelState",
    "EigenEstimate",
    "FiniteDifference",
    "FirstOrder",
    "Implicit",
    "ImplicitFixedPoint",
    "JaxoptCG",
    "Joint",
    "LinearSolver",
    "Neumann",
    "OuterTerms",
    "Problem",
    "REASONS",
    "Solver",
    "SolverCall",
    "SolverConfigError",
    "SolverOutput",
    "SolveResult",
    "Unrolled",
    "UnrolledForward",
    "extreme_eigenvalues",
    "hypergradient",
    "implicit_with",
    "init",
    "inner_hessian_extremes",
    "make_solver",
    "make_solvers",
    "parse_specs",
    "register_solver",
    "solver_from_spec",
    "solver_names",
    "solver_options",
    "solver_output",
    "step",
    "study",
    "trajectory",
    "trust_region",
]
