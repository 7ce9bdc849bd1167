"""Solvers by name, for configs: ``make_solver("implicit_cg", max_iter=20)``."""

from __future__ import annotations

import dataclasses
from typing import Any

from bilevel import solvers
from bilevel.errors import SolverConfigError

# name -> (solver class, options fixed by the name)
_REGISTRY: dict[str, tuple[type[solvers.Solver], dict[str, Any]]] = {
    "first_order": (solvers.FirstOrder, {}),
    "unrolled": (solvers.Unrolled, {}),
    "unrolled_forward": (solvers.UnrolledForward, {}),
    "implicit_cg": (solvers.Implicit, {"linear_solver": "cg"}),
    "implicit_neumann": (solvers.Implicit, {"linear_solver": "neumann"}),
    "implicit_fixed_point": (solvers.Implicit, {"linear_solver": "fixed_point"}),
    "implicit_jaxopt": (solvers.Implicit, {"linear_solver": "jaxopt_cg"}),
    "finite_difference": (solvers.FiniteDifference, {}),
    "joint": (solvers.Joint, {}),
}

SOLVER_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def solver_options(name: str) -> tuple[str, ...]:
    """The keyword options ``make_solver(name, ...)`` accepts."""
    cls, fixed = _lookup(name)
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in fixed)


def make_solver(name: str, **options: Any) -> solvers.Solver:
    """Build the solver called ``name`` with keyword ``options`` (its dataclass fields).

    **Raises** :class:`~bilevel.SolverConfigError` naming the valid names or options.
    """
    cls, fixed = _lookup(name)
    valid = solver_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise SolverConfigError(
            f"unknown option(s) {', '.join(unknown)} for solver {name!r}; valid options: {', '.join(valid)}"
        )
    return cls(**fixed, **options)


def _lookup(name: str):
    if name not in _REGISTRY:
        raise SolverConfigError(f"unknown solver {name!r}; valid solvers: {', '.join(SOLVER_NAMES)}")
    return _REGISTRY[name]
