"""The model boundary: a Flax NNX module split once into a static graph and plain parameters.

Above the boundary, models are NNX modules (readable layer definitions). Below it, everything is
a pure function of a nested ``dict`` of arrays, so ``jax.grad``, ``jax.jvp``, optax, orbax and the
bi-level solvers see parameters as an ordinary pytree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class PureModel:
    """A module's static structure; hashable, so it can be a static argument of ``jax.jit``.

    Attributes:
        graphdef: the NNX graph definition from ``nnx.split``.
        name: the registry name the model was built from (for messages and run records).
    """

    graphdef: nnx.GraphDef
    name: str = ""

    def apply(self, params: Params, *args: Any, method: str | None = None, **kwargs: Any) -> Any:
        """Call the module (or its method ``method``) with ``params``; pure in ``params``.

        Arguments:
            params: the nested dict returned by :func:`split_module`.
            *args, **kwargs: the module's own call arguments.
            method: name of a module method to call instead of ``__call__``.

        Returns:
            whatever the module's method returns.
        """
        module = nnx.merge(self.graphdef, params)
        fn: Callable[..., Any] = getattr(module, method) if method else module
        return fn(*args, **kwargs)


def split_module(module: nnx.Module, name: str = "") -> tuple[PureModel, Params]:
    """Split ``module`` into a :class:`PureModel` and its parameters as a plain nested dict.

    Only ``nnx.Param`` state is allowed: models in the bi-level loop must be stateless
    (no BatchNorm statistics, no dropout RNG state), so anything else is a bug we refuse early.
    """
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    if jax.tree.leaves(rest):
        raise TypeError(f"model {name or type(module).__name__} has non-parameter state: {rest}")
    return PureModel(graphdef, name), params.to_pure_dict()


def count_params(params: Params) -> int:
    """Number of scalar parameters in a parameter tree."""
    return sum(int(x.size) for x in jax.tree.leaves(params))
