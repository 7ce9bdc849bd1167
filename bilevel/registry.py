"""Solvers by name, for configs: ``make_solver("implicit_cg", max_iter=20)``.

A name stands for a factory and the keyword options it takes, each with its default. The built-in
names are registered here; a solver defined anywhere else becomes choosable by name (and so from a
config) with one call::

    bilevel.register_solver("my_solver", MySolver)          # options: MySolver's dataclass fields

The options of a name are its whole public interface: a config holds them with their defaults, and
:func:`make_solver` rejects any other keyword.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

from bilevel import solvers
from bilevel.errors import SolverConfigError


@dataclasses.dataclass(frozen=True)
class _Entry:
    factory: Callable[..., solvers.Solver]
    options: Mapping[str, Any]  # option name -> default


_REGISTRY: dict[str, _Entry] = {}


def dataclass_options(cls: type, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The init fields of a dataclass with their defaults (fields without one are left out)."""
    return {
        f.name: f.default
        for f in dataclasses.fields(cls)
        if f.init and f.default is not dataclasses.MISSING and f.name not in exclude
    }


def register_solver(
    name: str, factory: Callable[..., solvers.Solver], options: Mapping[str, Any] | None = None
) -> None:
    """Make ``factory(**options) -> Solver`` choosable by ``name``.

    Arguments:
        name: the name configs and :func:`make_solver` use; must not be taken.
        factory: builds the solver from keyword options (a solver class is one).
        options: ``{option: default}``; by default the dataclass fields of ``factory``.

    Raises:
        SolverConfigError: ``name`` is already registered.
    """
    if name in _REGISTRY:
        raise SolverConfigError(f"solver {name!r} is registered already")
    if options is None:
        options = dataclass_options(factory)
    _REGISTRY[name] = _Entry(factory, dict(options))


def solver_names() -> tuple[str, ...]:
    """Every registered name, in registration order."""
    return tuple(_REGISTRY)


def solver_options(name: str) -> dict[str, Any]:
    """``{option: default}`` of the keyword options ``make_solver(name, ...)`` accepts."""
    return dict(_lookup(name).options)


def make_solver(name: str, **options: Any) -> solvers.Solver:
    """Build the solver called ``name`` with keyword ``options`` (the rest keep their defaults).

    Raises:
        SolverConfigError: an unknown name or option, naming the valid ones.
    """
    entry = _lookup(name)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise SolverConfigError(
            f"unknown option(s) {', '.join(unknown)} for solver {name!r}; "
            f"valid options: {', '.join(entry.options)}"
        )
    return entry.factory(**options)


def _lookup(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise SolverConfigError(f"unknown solver {name!r}; valid solvers: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


register_solver("first_order", solvers.FirstOrder)
register_solver("unrolled", solvers.Unrolled)
register_solver("unrolled_forward", solvers.UnrolledForward)
for _linear_solver in ("cg", "neumann", "fixed_point", "jaxopt"):
    register_solver(
        f"implicit_{_linear_solver}",
        functools.partial(solvers.Implicit, linear_solver=_linear_solver.replace("jaxopt", "jaxopt_cg")),
        dataclass_options(solvers.Implicit, exclude=("linear_solver",)),
    )
register_solver("finite_difference", solvers.FiniteDifference)
register_solver("joint", solvers.Joint)
