"""The upper level's fusion terms by name, each with its default weight.

Fuse4Seg's upper objective (eq. 3, ``docs/conventions.md#losses``) is the follower's segmentation
loss on D_val plus weighted physical terms on the leader's output; the paper's alpha, beta and
gamma are the weights of ``decomp``, ``grad`` and ``recon`` here. The config holds one weight per
registered term (``loss.weights.<name>``), so a term registered here is configurable, logged and
used by every stage that optimises the fusion terms (bi-level rollout, disjoint baseline).

A term is ``term(out, images) -> scalar`` with ``out`` the leader's output (``fused (B, H, W, 1)``
and, for frequency-decoupled leaders, ``low`` / ``high`` features ``(N, B, H, W, C)``; SMFNet adds
``interaction``) and ``images (B, H, W, N)`` the sources. Adding one: write its loss in a module of
this package and register it below with one line.

SMFNet's stage II (eq. 28) is these terms with other weights: ``intensity`` (eq. 29, weight 1),
``decomp`` (eq. 27 for a leader with an interaction branch, weight alpha_4 = 10) and ``grad``
(eq. 30, weight alpha_5 = 2); ``intensity`` defaults to 0, so Fuse4Seg's objective is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fuse4seg_jax.losses.decomposition import decomposition_loss
from fuse4seg_jax.losses.gradient import gradient_loss
from fuse4seg_jax.losses.reconstruction import max_intensity_loss, reconstruction_loss
from fuse4seg_jax.losses.smfnet import decomposition_loss_with_interaction

FusionTerm = Callable[[Mapping[str, jax.Array], jax.Array], jax.Array]


class _Entry(NamedTuple):
    term: FusionTerm
    weight: float


_TERMS: dict[str, _Entry] = {}


def register_fusion_term(name: str, term: FusionTerm, *, weight: float) -> None:
    """Make ``term`` a weighted part of the upper objective, ``weight`` being its default.

    Raises:
        ValueError: ``name`` is registered already.
    """
    if name in _TERMS:
        raise ValueError(f"fusion term {name!r} is registered already")
    _TERMS[name] = _Entry(term, float(weight))


def fusion_term_weights() -> dict[str, float]:
    """``{name: default weight}`` of every registered term, in registration order."""
    return {name: entry.weight for name, entry in _TERMS.items()}


def fusion_terms(
    out: Mapping[str, jax.Array], images: jax.Array, names: tuple[str, ...]
) -> dict[str, jax.Array]:
    """The terms ``names`` on one leader output, unweighted: ``{name: scalar}``.

    Raises:
        KeyError: a name is not registered (configs are checked before this runs).
    """
    return {name: _TERMS[name].term(out, images) for name in names}


def _decomposition(out: Mapping[str, jax.Array], _: jax.Array) -> jax.Array:
    # leaders without frequency-decoupled features have nothing to decorrelate
    if "low" not in out or "high" not in out:
        return jnp.zeros((), jnp.float32)
    if "interaction" in out:  # SMFNet's graph branch joins the numerator (SMFNet eq. 27)
        return decomposition_loss_with_interaction(out["low"], out["high"], out["interaction"])
    return decomposition_loss(out["low"], out["high"])


register_fusion_term("decomp", _decomposition, weight=1.0)  # alpha
register_fusion_term("grad", lambda out, x: gradient_loss(out["fused"], x), weight=5.0)  # beta
register_fusion_term("recon", lambda out, x: reconstruction_loss(out["fused"], x), weight=0.05)  # gamma
register_fusion_term("intensity", lambda out, x: max_intensity_loss(out["fused"], x), weight=0.0)  # SMFNet
