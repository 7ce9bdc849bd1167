"""The one error a user of :mod:`bilevel` can cause by configuration, and the checks that raise it."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


class SolverConfigError(ValueError):
    """An unknown solver name, an unknown option or an invalid option value.

    The message lists the valid names or options, so a config file can be fixed from it alone.
    """


def require_positive(name: str, value: int | float | None, *, allow_none: bool = False) -> None:
    """Raise unless ``value > 0`` (or ``value is None`` where ``allow_none``).

    Raises:
        SolverConfigError: naming the option ``name`` and its value.
    """
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise SolverConfigError(f"solver option {name} must be positive, got {value!r}")


def require_non_negative(name: str, value: int | float) -> None:
    """Raise unless ``value >= 0``.

    Raises:
        SolverConfigError: naming the option ``name`` and its value.
    """
    if value < 0:
        raise SolverConfigError(f"solver option {name} must be >= 0, got {value}")


def require_one_of(name: str, value: Any, valid: Collection[Any]) -> None:
    """Raise unless ``value`` is one of ``valid``.

    Raises:
        SolverConfigError: naming the option, its value and every valid value.
    """
    if value not in valid:
        raise SolverConfigError(f"solver option {name}={value!r} is not one of {', '.join(valid)}")
