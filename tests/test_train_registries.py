"""A solver or model registered anywhere is chosen by one override and trains in the tiny pipeline."""

import dataclasses

import jax
import numpy as np
import optax
import pytest

import bilevel
from fuse4seg_jax import models
from fuse4seg_jax.train.defaults import demo_config
from fuse4seg_jax.train.sharding import put_batch

pytestmark = pytest.mark.usefixtures("standard_promotion")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScaledFirstOrder(bilevel.FirstOrder):
    """A solver defined outside the package: first-order's hypergradient times ``scale``."""

    scale: float = 1.0

    def __call__(self, *args) -> bilevel.SolverOutput:
        out = super().__call__(*args)
        hypergrad = jax.tree.map(lambda g: self.scale * g, out.hypergrad)
        diagnostics = {**out.diagnostics, "hypergrad_norm": optax.tree.norm(hypergrad)}
        return out._replace(hypergrad=hypergrad, diagnostics=diagnostics)


# at import, so that every config of the session is built with this solver's options (and the
# trainers cached by config are shared); guarded, as the module may be imported twice
if "scaled_first_order" not in bilevel.solver_names():
    bilevel.register_solver("scaled_first_order", ScaledFirstOrder)


def _first_step(trainer, batches):
    """``(state, metrics)`` after one bi-level step from a fresh state."""
    tr, val = (put_batch(trainer.mesh, b) for b in batches)
    return trainer.steps["bilevel"](trainer.init_state(), tr, val)


def test_a_solver_registered_outside_the_package_is_chosen_with_its_options(tiny_trainer, tiny_batches):
    half = tiny_trainer(
        "--config.bilevel.solver=scaled_first_order", "--config.bilevel.options.scaled_first_order.scale=0.5"
    )
    # the demo config compiles every solver's inner loop once, a registered one's too
    assert half.solver == ScaledFirstOrder(scale=0.5, scan_inner=True)
    _, halved = _first_step(half, tiny_batches)
    _, first = _first_step(tiny_trainer(), tiny_batches)  # first_order: the default solver
    assert float(first["hypergrad_norm"]) > 0
    # two float32 programs compiled apart: the same sums, not always in the same order
    assert float(halved["hypergrad_norm"]) == pytest.approx(0.5 * float(first["hypergrad_norm"]), rel=1e-5)


# The default leader and follower reuse the first-order pipeline test's trainer (same config, one
# cached trainer); every other model compiles its own step (11-45 s on 2 shared cores), so is slow.
_DEFAULTS = demo_config().model
MODEL_OVERRIDES = [
    pytest.param(
        f"--config.model.{family}={name}", marks=() if name == _DEFAULTS[family] else pytest.mark.slow
    )
    for family in ("fusion", "segmentation")
    for name in models.names(family)
]


@pytest.mark.parametrize("override", MODEL_OVERRIDES)
def test_every_registered_model_takes_a_bilevel_step_from_one_override(override, tiny_trainer, tiny_batches):
    trainer = tiny_trainer(override)
    before = jax.device_get(trainer.init_state()["leader"])
    state, metrics = _first_step(trainer, tiny_batches)
    assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["hypergrad_norm"]))
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state["leader"]), strict=True)
    ]
    assert any(moved), "the leader did not move"
