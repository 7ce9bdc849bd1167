"""Models by name, so configs say ``fusion: frequency_decoupled`` rather than importing classes.

Families:

- ``fusion``: ``f(x: (B, H, W, N)) -> dict`` with at least ``fused: (B, H, W, 1)`` in [0, 1].
- ``segmentation``: ``f(x: (B, H, W, C_in)) -> logits (B, H, W, num_classes)``.
- ``discriminator``: ``f(x: (B, H, W, 1)) -> logits (B,)``.

A model module registers its constructor with :func:`register`, together with two size presets:
``paper`` (the sizes its paper uses, or ours where the paper gives none) and ``demo`` (small enough
for the 64 x 64 phantom demo on 2 CPU cores). Sizes are the constructor's architecture keywords;
the runtime arguments a family's caller supplies (:data:`RUNTIME_ARGUMENTS`) are not sizes.
``fuse4seg_jax.models`` imports every model module, so the table is complete once the package is
imported, and configs take every model's sizes from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
from flax import nnx

from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.models.pure import Params, PureModel, split_module

FAMILIES = ("fusion", "segmentation", "discriminator")
# What the caller of each family supplies from the data and the task, not from a size preset.
RUNTIME_ARGUMENTS = {
    "fusion": ("num_modalities",),
    "segmentation": ("in_channels", "num_classes"),
    "discriminator": (),
}
PRESETS = ("paper", "demo")


@dataclasses.dataclass(frozen=True)
class _Entry:
    constructor: Callable[..., nnx.Module]
    presets: Mapping[str, Mapping[str, Any]]  # preset -> {size: value}, every size in each


_REGISTRY: dict[tuple[str, str], _Entry] = {}


def register(
    family: str, name: str, *, paper: Mapping[str, Any], demo: Mapping[str, Any]
) -> Callable[[Callable[..., nnx.Module]], Callable[..., nnx.Module]]:
    """Decorator: record ``constructor(*, rngs, **runtime, **sizes) -> nnx.Module`` as ``family/name``.

    Arguments:
        family: one of :data:`FAMILIES`.
        name: the name configs use; unique within the family.
        paper: every size keyword of the constructor with its paper value.
        demo: the sizes that differ at demo scale (the others keep their paper value).

    Raises:
        ValueError: an unknown family, a name registered twice, a runtime argument among the sizes,
            or a demo size that is not a paper size.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {FAMILIES}")
    runtime = sorted(set(paper) & set(RUNTIME_ARGUMENTS[family]))
    if runtime:
        raise ValueError(f"model {family}/{name}: runtime arguments {runtime} are not sizes")
    extra = sorted(set(demo) - set(paper))
    if extra:
        raise ValueError(f"model {family}/{name}: demo sizes {extra} have no paper value")

    def decorate(constructor: Callable[..., nnx.Module]) -> Callable[..., nnx.Module]:
        if (family, name) in _REGISTRY:
            raise ValueError(f"model {family}/{name} registered twice")
        _REGISTRY[(family, name)] = _Entry(constructor, {"paper": dict(paper), "demo": {**paper, **demo}})
        return constructor

    return decorate


def names(family: str) -> list[str]:
    """Registered model names of one family, sorted."""
    return sorted(n for f, n in _REGISTRY if f == family)


def sizes(family: str, name: str, preset: str = "paper") -> dict[str, Any]:
    """Every size keyword of model ``family/name`` at ``preset`` (one of :data:`PRESETS`)."""
    return dict(_lookup(family, name).presets[preset])


def has_method(family: str, name: str, method: str) -> bool:
    """Whether registered model ``family/name`` defines ``method`` (e.g. ``autoencode``)."""
    return (family, name) in _REGISTRY and hasattr(_REGISTRY[(family, name)].constructor, method)


def build(family: str, name: str, *, rngs: nnx.Rngs, **arguments: Any) -> nnx.Module:
    """The NNX module ``family/name``; sizes not in ``arguments`` take their paper value.

    Arguments:
        family: one of :data:`FAMILIES`.
        name: a registered name (see :func:`names`).
        rngs: parameter initialisation.
        **arguments: the family's runtime arguments (:data:`RUNTIME_ARGUMENTS`) and any sizes.

    Returns:
        the module, before the split at the pure boundary (``nnx.eval_shape`` it to count
        parameters without computing them).

    Raises:
        ConfigError: unknown family or name, or arguments the constructor does not accept.
    """
    entry = _lookup(family, name)
    try:
        return entry.constructor(rngs=rngs, **{**entry.presets["paper"], **arguments})
    except TypeError as err:
        raise ConfigError(f"bad sizes for {family} model {name!r}: {err}") from err


def create(family: str, name: str, *, key: jax.Array, **arguments: Any) -> tuple[PureModel, Params]:
    """Build model ``name`` of ``family`` (see :func:`build`) and split it at the pure boundary.

    Arguments:
        family: one of :data:`FAMILIES`.
        name: a registered name (see :func:`names`).
        key: PRNG key for parameter initialisation.
        **arguments: the family's runtime arguments and any sizes (the rest: paper sizes).

    Returns:
        ``(model, params)``: the static :class:`PureModel` and its parameter tree.

    Raises:
        ConfigError: unknown family or name, or arguments the constructor does not accept.
    """
    module = build(family, name, rngs=nnx.Rngs(key), **arguments)
    return split_module(module, name=f"{family}/{name}")


def _lookup(family: str, name: str) -> _Entry:
    if (family, name) not in _REGISTRY:
        raise ConfigError(f"unknown {family} model {name!r}; available: {', '.join(names(family)) or 'none'}")
    return _REGISTRY[(family, name)]
