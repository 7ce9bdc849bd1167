"""Shared fixtures: a tiny phantom dataset and config overrides for fast pipeline tests."""

import os

import jax
import pytest

from fuse4seg_jax.cli import xla_flags_env

# The tests run the XLA:CPU flags the command line runs (read when the backend starts, after this
# module is imported). With XLA:CPU's YNNPACK fusions on, the float64 study in
# test_cli_compare_solvers got a plain unrolled hypergradient 6 % away from the remat one and from
# its own value with them off (docs/conventions.md#speed-on-cpu); with them off the two agree.
os.environ.update(xla_flags_env(os.environ))

TINY_CONFIG = "configs/smoke.py"


@pytest.fixture(scope="session")
def tiny_overrides(tmp_path_factory) -> list[str]:
    """Overrides that put configs/smoke.py's (:data:`TINY_CONFIG`) phantom data in a temporary folder."""
    root = tmp_path_factory.mktemp("tiny_data")
    return [f"--config.data.manual_dir={root / 'phantom'}", f"--config.data.data_dir={root / 'prepared'}"]


@pytest.fixture
def standard_promotion():
    """Run a test under JAX's standard dtype promotion instead of the suite's strict one.

    For the training stack: optax's Adam bias correction computes ``decay ** count`` (a float to
    an int32 power), which strict promotion rejects.
    """
    with jax.numpy_dtype_promotion("standard"):
        yield


@pytest.fixture(scope="session")
def tiny_batches(tiny_overrides):
    """``(tr, val)``: the first bi-level step's host batches of the tiny config, 8 slices each."""
    from fuse4seg_jax import data
    from fuse4seg_jax.train.config import load_config
    from fuse4seg_jax.train.loop import ensure_dataset

    config = load_config(TINY_CONFIG, tiny_overrides)
    src = data.open_split(ensure_dataset(config), "train")
    return data.patient_split_batch(src, 8, 8, seed=0, step=0)


@pytest.fixture(scope="session")
def tiny_trainer(tiny_overrides):
    """``tiny_trainer(*overrides, devices=1)``: a Trainer of the tiny config, cached per config.

    Compiling the bi-level step dominates the pipeline tests' time; tests that need the same
    config (however its overrides are spelled) share one trainer, so each step function compiles
    once per session.
    """
    from fuse4seg_jax.train.config import load_config, to_json
    from fuse4seg_jax.train.sharding import make_mesh
    from fuse4seg_jax.train.trainer import Trainer

    cache = {}

    def get(*overrides: str, devices: int = 1):
        mesh_override = f"--config.mesh.data={devices}"
        config = load_config(TINY_CONFIG, [*tiny_overrides, *overrides, mesh_override])
        key = to_json(config)  # holds mesh.data, so the device count too
        if key not in cache:
            cache[key] = Trainer(config, make_mesh(devices), num_modalities=2)
        return cache[key]

    return get
