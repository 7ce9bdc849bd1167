"""Hypergradient solvers: frozen dataclasses over :class:`Solver`, one module per family.

See ``docs/solvers.md`` for what each computes and when it is exact.
"""

from bilevel.solvers.base import DIAGNOSTIC_KEYS, OuterTerms, Solver, SolverCall, SolverOutput, solver_output
from bilevel.solvers.finite_difference import FiniteDifference
from bilevel.solvers.first_order import FirstOrder
from bilevel.solvers.fixed_point import ImplicitFixedPoint
from bilevel.solvers.implicit import IFTSolver, Implicit
from bilevel.solvers.joint import Joint
from bilevel.solvers.penalty import F2SA
from bilevel.solvers.single_loop import SOBA
from bilevel.solvers.unrolled import Unrolled, UnrolledForward
from bilevel.solvers.value_function import BOME

__all__ = [
    "BOME",
    "DIAGNOSTIC_KEYS",
    "F2SA",
    "SOBA",
    "FiniteDifference",
    "FirstOrder",
    "IFTSolver",
    "Implicit",
    "ImplicitFixedPoint",
    "Joint",
    "OuterTerms",
    "Solver",
    "SolverCall",
    "SolverOutput",
    "Unrolled",
    "UnrolledForward",
    "solver_output",
]
