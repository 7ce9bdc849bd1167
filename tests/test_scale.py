"""Data-parallel training on 8 simulated CPU devices gives the numbers of one device."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from fuse4seg_jax import data
from fuse4seg_jax.train.checkpoint import Checkpoints
from fuse4seg_jax.train.config import load_config
from fuse4seg_jax.train.loop import ensure_dataset
from fuse4seg_jax.train.sharding import fsdp_spec, make_mesh, put_batch

ROOT = Path(__file__).resolve().parents[1]

# float32 sums over a batch split 8 ways are reduced in another order than on one device, and the
# leader's hypergradient amplifies that (the decomposition loss divides by small correlations).
# After three steps the parameters agree to 5e-3 relative or 1e-4 of the largest parameter of their
# tree (measured: at most 2.5e-3 relative, on entries ~1e-5). Adam would turn the noise of near-zero
# gradients into full learning-rate steps of either sign, so these runs use optim.optimizer=sgd.
RTOL, ATOL_TO_MAX = 5e-3, 1e-4
SGD = "--config.optim.optimizer=sgd"

pytestmark = pytest.mark.usefixtures("standard_promotion")


@pytest.fixture(scope="module")
def source(tiny_overrides):
    config = load_config("configs/smoke.py", tiny_overrides)
    return data.open_split(ensure_dataset(config), "train")


def _run(tiny_trainer, source, devices: int, solver: str, steps: int = 3, shard_params=False):
    trainer = tiny_trainer(
        SGD,
        f"--config.bilevel.solver={solver}",
        f"--config.mesh.shard_params={shard_params}",
        devices=devices,
    )
    mesh = trainer.mesh
    state = trainer.init_state()
    for step in range(steps):
        tr, val = (put_batch(mesh, b) for b in data.patient_split_batch(source, 8, 8, seed=0, step=step))
        state, _ = trainer.steps["bilevel"](state, tr, val)
    return trainer, state


def _assert_close(a, b):
    leaves = [np.asarray(x) for x in jax.tree.leaves(a)]
    atol = ATOL_TO_MAX * max(float(np.abs(x).max()) for x in leaves)
    for x, y in zip(leaves, jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, np.asarray(y), rtol=RTOL, atol=atol)


@pytest.mark.parametrize(
    "solver",
    [
        "first_order",
        pytest.param("unrolled", marks=pytest.mark.slow),
        pytest.param("implicit_cg", marks=pytest.mark.slow),
    ],
)
def test_eight_devices_match_one(solver, tiny_trainer, source):
    _, one = _run(tiny_trainer, source, 1, solver)
    _, eight = _run(tiny_trainer, source, 8, solver)
    _assert_close(one["leader"], eight["leader"])
    _assert_close(one["follower"], eight["follower"])
    _assert_close(one["ema"], eight["ema"])


def test_batches_are_split_along_the_data_axis(source):
    mesh = make_mesh(8)
    tr, _ = data.patient_split_batch(source, 8, 8, seed=0, step=0)
    batch = put_batch(mesh, tr)
    assert batch["image"].sharding.spec == PartitionSpec("data")
    shards = batch["image"].addressable_shards
    assert len(shards) == 8 and all(s.data.shape[0] == 1 for s in shards)
    np.testing.assert_array_equal(np.asarray(batch["image"]), tr["image"])


def test_fsdp_rule_shards_large_parameters_only():
    assert fsdp_spec((3, 3, 64, 128), 8) == PartitionSpec(None, None, None, "data")
    assert fsdp_spec((7, 7, 1, 96), 8) == PartitionSpec()  # too small to be worth it
    assert fsdp_spec((129, 131), 8) == PartitionSpec()  # no axis divisible by 8


def test_sharded_parameters_give_the_same_numbers(tiny_trainer, source):
    _, replicated = _run(tiny_trainer, source, 8, "first_order", steps=2)
    trainer, sharded = _run(tiny_trainer, source, 8, "first_order", steps=2, shard_params=True)
    _assert_close(replicated["follower"], sharded["follower"])
    specs = {s.spec for s in jax.tree.leaves(trainer.state_sharding)}
    assert PartitionSpec() in specs


def test_checkpoint_saved_on_eight_devices_restores_on_one_and_four(tiny_trainer, source, tmp_path):
    _, state = _run(tiny_trainer, source, 8, "first_order", steps=1)
    Checkpoints(tmp_path / "ckpt").save(1, state)
    for devices in (1, 4):
        trainer = tiny_trainer(SGD, devices=devices)
        restored = Checkpoints(tmp_path / "ckpt").restore(trainer.abstract_state())
        leaf = jax.tree.leaves(restored["leader"])[0]
        assert len(leaf.sharding.device_set) == devices
        _assert_close(state, restored)
        np.testing.assert_array_equal(np.asarray(restored["step"]), 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_loopback_match_one_process(tiny_overrides, tiny_trainer, source, tmp_path):
    port = _free_port()
    overrides = [*tiny_overrides, SGD]  # the workers build their own mesh of every device
    outs = [tmp_path / f"p{i}.json" for i in range(2)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "distributed_worker.py"),
                str(i),
                str(port),
                str(outs[i]),
                *overrides,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # the repository on the path: the workers import the package whether or not it is installed
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            },
            cwd=ROOT,
        )
        for i in range(2)
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
    results = [json.loads(o.read_text()) for o in outs]
    assert [r["process_count"] for r in results] == [2, 2]
    assert [r["devices"] for r in results] == [4, 4]
    _, single = _run(tiny_trainer, source, 4, "first_order", steps=2)
    expected = float(sum(np.abs(np.asarray(x)).sum() for x in jax.tree.leaves(single["leader"])))
    for r in results:
        assert r["checksum"] == pytest.approx(expected, rel=1e-5)
