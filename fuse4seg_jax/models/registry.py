"""Models by name, so configs say ``fusion: frequency_decoupled`` rather than importing classes.

Families:

- ``fusion``: ``f(x: (B, H, W, N)) -> dict`` with at least ``fused: (B, H, W, 1)`` in [0, 1].
- ``segmentation``: ``f(x: (B, H, W, C_in)) -> logits (B, H, W, num_classes)``.
- ``discriminator``: ``f(x: (B, H, W, 1)) -> logits (B,)``.

A model module registers its constructor with :func:`register`; ``fuse4seg_jax.models``
imports every model module so that the table is complete once the package is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.models.pure import Params, PureModel, split_module

FAMILIES = ("fusion", "segmentation", "discriminator")
_REGISTRY: dict[tuple[str, str], Callable[..., nnx.Module]] = {}


def register(family: str, name: str) -> Callable[[Callable[..., nnx.Module]], Callable[..., nnx.Module]]:
    """Decorator: record ``constructor(*, rngs, **sizes) -> nnx.Module`` under ``(family, name)``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {FAMILIES}")

    def decorate(constructor: Callable[..., nnx.Module]) -> Callable[..., nnx.Module]:
        if (family, name) in _REGISTRY:
            raise ValueError(f"model {family}/{name} registered twice")
        _REGISTRY[(family, name)] = constructor
        return constructor

    return decorate


def names(family: str) -> list[str]:
    """Registered model names of one family, sorted."""
    return sorted(n for f, n in _REGISTRY if f == family)


def has_method(family: str, name: str, method: str) -> bool:
    """Whether registered model ``family/name`` defines ``method`` (e.g. ``autoencode``)."""
    return hasattr(_REGISTRY.get((family, name)), method)


def create(family: str, name: str, *, key: jax.Array, **sizes: Any) -> tuple[PureModel, Params]:
    """Build model ``name`` of ``family`` with ``sizes`` and split it at the pure boundary.

    Arguments:
        family: one of :data:`FAMILIES`.
        name: a registered name (see :func:`names`).
        key: PRNG key for parameter initialisation.
        **sizes: the constructor's keyword arguments (widths, depths, number of modalities, ...).

    Returns:
        ``(model, params)``: the static :class:`PureModel` and its parameter tree.

    Raises:
        ConfigError: unknown family or name, or sizes the constructor does not accept.
    """
    if (family, name) not in _REGISTRY:
        raise ConfigError(f"unknown {family} model {name!r}; available: {', '.join(names(family)) or 'none'}")
    try:
        module = _REGISTRY[(family, name)](rngs=nnx.Rngs(key), **sizes)
    except TypeError as err:
        raise ConfigError(f"bad sizes for {family} model {name!r}: {err}") from err
    return split_module(module, name=f"{family}/{name}")
