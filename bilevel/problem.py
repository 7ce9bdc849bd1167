"""A bi-level problem: the follower's (inner) and the leader's (outer) loss as pure functions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Problem:
    """Two pure losses of pytrees, ``f(inner, outer, batch)`` and ``F(inner, outer, batch)``.

    The follower minimises ``inner_loss`` over ``inner`` with ``outer`` fixed; the leader
    minimises ``outer_loss(inner*(outer), outer)``. Frozen and hashable, so it can be a static
    ``jit`` argument (equal problems need the same function objects to share a compilation).

    Arguments:
        inner_loss: ``(inner, outer, batch) -> scalar``, or ``(scalar, aux)`` with ``has_aux``.
        outer_loss: same signature as ``inner_loss``.
        has_aux: both losses return ``(scalar, aux)``; aux is passed through to the
            :class:`~bilevel.SolverOutput` and never differentiated.
    """

    inner_loss: Callable[..., Any]
    outer_loss: Callable[..., Any]
    has_aux: bool = False

    def inner_value(self, inner: PyTree, outer: PyTree, batch: PyTree) -> tuple[jax.Array, Any]:
        """``(inner loss, aux)``; aux is ``None`` without ``has_aux``."""
        return self._split(self.inner_loss(inner, outer, batch))

    def outer_value(self, inner: PyTree, outer: PyTree, batch: PyTree) -> tuple[jax.Array, Any]:
        """``(outer loss, aux)``; aux is ``None`` without ``has_aux``."""
        return self._split(self.outer_loss(inner, outer, batch))

    def _split(self, value: Any) -> tuple[jax.Array, Any]:
        return value if self.has_aux else (value, None)
