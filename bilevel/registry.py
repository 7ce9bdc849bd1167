"""Solvers by name, for configs: ``make_solver("implicit_cg", max_iter=20)``.

A name stands for a factory and the keyword options it takes, each with its default. The built-in
names are registered here, one line each; a solver defined anywhere else becomes choosable by name
(and so from a config) with one call::

    bilevel.register_solver("my_solver", MySolver)          # options: MySolver's dataclass fields
    bilevel.register_solver("implicit_mine", *bilevel.implicit_with(MyLinearSolver))

The options of a name are its whole public interface: a config holds them with their defaults, and
:func:`make_solver` rejects any other keyword. :func:`parse_specs` reads solvers with options from
one string (``"first_order,implicit_cg:max_iter=20,tol=1e-5"``), for command lines. See
``docs/solvers.md#how-to-add-a-solver``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from bilevel import linear_solve
from bilevel.errors import SolverConfigError
from bilevel.solvers import (
    BOME,
    F2SA,
    SOBA,
    FiniteDifference,
    FirstOrder,
    Implicit,
    ImplicitFixedPoint,
    Joint,
    Solver,
    Unrolled,
    UnrolledForward,
)


@dataclasses.dataclass(frozen=True)
class _Entry:
    factory: Callable[..., Solver]
    options: Mapping[str, Any]  # option name -> default


_REGISTRY: dict[str, _Entry] = {}


def dataclass_options(cls: type, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The init fields of a dataclass with their defaults (fields without one are left out).

    Arguments:
        cls: a dataclass.
        exclude: field names to leave out.

    Returns:
        ``{field name: default}`` in field order.
    """
    return {
        f.name: f.default
        for f in dataclasses.fields(cls)
        if f.init and f.default is not dataclasses.MISSING and f.name not in exclude
    }


def register_solver(
    name: str, factory: Callable[..., Solver], options: Mapping[str, Any] | None = None
) -> None:
    """Make ``factory(**options) -> Solver`` choosable by ``name``.

    Every option should be a plain config value (int, float, str, bool, None or a tuple) so that a
    config can hold it.

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
    """Every registered name, in registration order.

    Returns:
        The names.
    """
    return tuple(_REGISTRY)


def solver_options(name: str) -> dict[str, Any]:
    """``{option: default}`` of the keyword options ``make_solver(name, ...)`` accepts.

    Raises:
        SolverConfigError: an unknown name, naming the valid ones.
    """
    return dict(_lookup(name).options)


def make_solver(name: str, **options: Any) -> Solver:
    """Build the solver called ``name`` with keyword ``options`` (the rest keep their defaults).

    Returns:
        The solver.

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


def implicit_with(linear_solver: type, **defaults: Any) -> tuple[Callable[..., Implicit], dict[str, Any]]:
    """A factory of :class:`~bilevel.Implicit` over a linear solver class, and its options.

    The options are the linear solver's dataclass fields followed by ``Implicit``'s own (all but
    ``linear_solver``); the factory routes each keyword to the one it belongs to. The pair is what
    :func:`register_solver` takes: ``register_solver(name, *implicit_with(MyLinearSolver))``.

    Arguments:
        linear_solver: a dataclass whose instances are linear solvers (``(matvec, b) ->
            SolveResult``), every field with a default.
        defaults: options whose default differs from the field's (``warm_start=True``).

    Returns:
        ``(factory, {option: default})``.

    Raises:
        SolverConfigError: a field of ``linear_solver`` has the name of an option of ``Implicit``,
            or a key of ``defaults`` is no option.
    """
    own = dataclass_options(Implicit, exclude=("linear_solver",))
    routed = dataclass_options(linear_solver)
    clash = sorted(set(own) & set(routed))
    if clash:
        raise SolverConfigError(
            f"linear solver {linear_solver.__name__} has option(s) {', '.join(clash)} of Implicit itself"
        )

    options = {**routed, **own}
    unknown = sorted(set(defaults) - set(options))
    if unknown:
        raise SolverConfigError(f"unknown default(s) {', '.join(unknown)}; options: {', '.join(options)}")

    def factory(**chosen: Any) -> Implicit:
        chosen = {**defaults, **chosen}
        solver_options = {k: chosen.pop(k) for k in list(chosen) if k in routed}
        return Implicit(linear_solver=linear_solver(**solver_options), **chosen)

    return factory, {**options, **defaults}


def parse_specs(text: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Solver specs ``name[:key=value,...]`` separated by commas, as one string.

    A comma-separated item with ``=`` and no ``:`` is another option of the solver before it, so
    ``"first_order,implicit_cg:max_iter=20,tol=1e-5,unrolled"`` is three solvers. Values are read
    as int, float, ``true`` / ``false``, ``none`` or else a string.

    Returns:
        ``[(spec as written, name, options)]``.

    Raises:
        SolverConfigError: an empty spec, or an option before any solver name.
    """
    specs: list[list[Any]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise SolverConfigError(f"solver list {text!r} has an empty entry")
        name, colon, option = item.partition(":")
        if colon or "=" not in item:
            specs.append([name.strip(), name.strip(), {}])
            item = option
        if item:
            key, equals, value = item.partition("=")
            if not specs or not equals:
                raise SolverConfigError(
                    f"solver list {text!r}: {item!r} is not key=value after a solver name"
                )
            specs[-1][0] += f"{':' if not specs[-1][2] else ','}{key.strip()}={value.strip()}"
            specs[-1][2][key.strip()] = _value(value.strip())
    return [(spec, name, options) for spec, name, options in specs]


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def make_solvers(specs: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Solver]:
    """``{spec: make_solver(name, **options)}``.

    Raises:
        SolverConfigError: an unknown solver or option, naming the spec.
    """
    solvers = {}
    for spec, name, options in specs:
        try:
            solvers[spec] = make_solver(name, **options)
        except SolverConfigError as err:
            raise SolverConfigError(f"solver spec {spec!r}: {err}") from None
    return solvers


def solver_from_spec(spec: str) -> Solver:
    """The one solver a spec names, e.g. ``"implicit_cg:max_iter=20,tol=1e-5"``.

    Raises:
        SolverConfigError: not one spec, or an unknown solver or option, naming the spec.
    """
    specs = parse_specs(spec)
    if len(specs) != 1:
        raise SolverConfigError(f"{spec!r} names {len(specs)} solvers; give one")
    return make_solvers(specs)[specs[0][0]]


register_solver("first_order", FirstOrder)
register_solver("unrolled", Unrolled)
register_solver("unrolled_forward", UnrolledForward)
register_solver("implicit_cg", *implicit_with(linear_solve.CG))
register_solver("implicit_neumann", *implicit_with(linear_solve.Neumann))
register_solver("implicit_cg_warm", *implicit_with(linear_solve.CG, warm_start=True, max_iter=2))
register_solver("implicit_neumann_warm", *implicit_with(linear_solve.Neumann, warm_start=True, max_iter=2))
register_solver("implicit_fixed_point", ImplicitFixedPoint)
register_solver("implicit_jaxopt", *implicit_with(linear_solve.JaxoptCG))
register_solver("finite_difference", FiniteDifference)
register_solver("joint", Joint)
register_solver("f2sa", F2SA)
register_solver("soba", SOBA)
register_solver("bome", BOME)
