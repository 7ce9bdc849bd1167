"""solver_study's outer loop takes the bi-level stage's own steps, and observes a held-out Dice."""

import numpy as np
import pytest

from fuse4seg_jax import data
from fuse4seg_jax.train import solver_study
from fuse4seg_jax.train.loop import batch_for, ensure_dataset
from fuse4seg_jax.train.sharding import put_batch

pytestmark = [pytest.mark.usefixtures("standard_promotion"), pytest.mark.slow]


def test_the_studied_outer_loop_takes_the_training_runs_bilevel_steps(tiny_trainer):
    """From the same state over the same batches, ``outer_loop`` reports the upper and inner
    losses the trainer's bi-level step reports, and the Dice it observes is a score in [0, 1]."""
    trainer = tiny_trainer()
    record = solver_study.outer_loop(
        trainer,
        trainer.init_state(),
        solver_study.outer_batches(trainer, 0, 2),
        "first_order",
        observe=solver_study.held_out_dice(trainer),
    )
    src = data.open_split(ensure_dataset(trainer.config), "train")
    state, reported = trainer.init_state(), []
    for step in range(2):
        tr, val = (put_batch(trainer.mesh, b) for b in batch_for("bilevel", src, trainer.config, step))
        state, metrics = trainer.steps["bilevel"](state, tr, val)
        reported.append((float(metrics["loss"]), float(metrics["inner_loss"])))
    np.testing.assert_allclose(np.stack([record["outer_loss"], record["inner_loss"]], 1), reported, rtol=1e-5)
    assert record["dice"].shape == (3,) and np.all((record["dice"] >= 0) & (record["dice"] <= 1))
    assert record["time_s"].shape == (3,) and record["time_s"][-1] > 0
