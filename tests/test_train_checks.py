"""Config validation: a bad value is refused before a run writes anything, naming key and value."""

import re

import pytest

from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.train.checks import validate_config
from fuse4seg_jax.train.config import load_config
from fuse4seg_jax.train.loop import run_training

ONE_DEVICE = "--config.mesh.data=1"  # the suite simulates 8 devices; the demo's batches are 4
SLOW_EMA = "--config.bilevel.ema=0.99"  # a warning (61 % of the start after 50 steps) if it ran


def test_the_shipped_configs_pass():
    for path in (
        "configs/demo.py",
        "configs/brats2021_t1ce_flair.py",
        "configs/baseline_multichannel.py:demo",
    ):
        validate_config(load_config(path, [ONE_DEVICE]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stages.follower=-1", "stages.follower = -1; expected an integer >= 0"),
        ("bilevel.inner_steps=0", "bilevel.inner_steps = 0; expected an integer >= 1"),
        ("bilevel.ema=1.0", "bilevel.ema = 1.0; expected 0 <= m < 1"),
        ("batch.val_size=0", "batch.val_size = 0; expected an integer >= 1"),
        ("batch.accumulation=3", "batch.size = 4; expected a multiple of the 1 data-axis devices"),
        ("optim.follower_lr=0.0", "optim.follower_lr = 0.0; expected a number > 0"),
        ("optim.optimizer=adam", "optim.optimizer = 'adam'; expected one of adamw, sgd"),
        ("optim.schedule=linear", "optim.schedule = 'linear'; expected one of cosine, constant"),
        ("stages.unit=hours", "stages.unit = 'hours'; expected one of steps, epochs"),
        ("precision=float16", "precision = 'float16'; expected one of float32, bfloat16"),
        ("follower_input=fusion", "follower_input = 'fusion'; expected one of average, fused, stacked"),
        ("log_every=0", "log_every = 0; expected an integer >= 1"),
        ("checkpoint_every=0", "checkpoint_every = 0; expected an integer >= 1"),
        ("data.fractions=(0.5, 0.5, 0.5)", "data.fractions: "),
        ("mesh.data=9", "mesh.data = 9"),
        ("mesh.model=3", "mesh.model = 3"),
        ("model.fusion=fused", "model.fusion = 'fused'; expected one of caf_dense, "),
        ("model.fusion_sizes.frequency_decoupled.heads=3", "model.fusion_sizes.frequency_decoupled: "),
        ("bilevel.solver=newton", "bilevel.solver = 'newton'; expected one of first_order, "),
        ("bilevel.solver=unrolled_forward", "bilevel.solver: unrolled_forward differentiates the inner"),
        ("loss.weights.grad=-1.0", "loss.weights.grad = -1.0; expected a finite number >= 0"),
        ("bilevel.monitor.every=-1", "bilevel.monitor.every = -1; expected an integer >= 0"),
        ("bilevel.monitor.lanczos=0", "bilevel.monitor.lanczos = 0; expected an integer >= 1"),
    ],
)
def test_a_bad_value_names_its_key_and_no_run_is_written(override, message, tmp_path):
    data = [
        f"--config.data.manual_dir={tmp_path / 'phantom'}",
        f"--config.data.data_dir={tmp_path / 'prepared'}",
    ]
    config = load_config("configs/demo.py", [*data, ONE_DEVICE, SLOW_EMA, f"--config.{override}"])
    warnings = []
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_training(config, tmp_path / "run", progress=False, warn=warnings.append)
    assert not any(tmp_path.iterdir())  # no run directory, phantom cases or prepared dataset
    assert warnings == []  # warnings are for configs that run


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("unrolledd", "unknown solver 'unrolledd'"),
        ("unrolled,first_order", "names 2 solvers"),
        ("unrolled_forward", "unrolled_forward differentiates the inner loop in forward mode"),
    ],
)
def test_a_bad_monitor_reference_names_its_key(reference, message):
    config = load_config("configs/demo.py", [ONE_DEVICE, "--config.bilevel.monitor.every=5"])
    config.bilevel.monitor.reference = reference
    with pytest.raises(ConfigError, match=f"config key bilevel.monitor.reference: .*{message}"):
        validate_config(config)


def test_batches_must_split_over_the_data_axis():
    config = load_config("configs/demo.py", ["--config.mesh.data=8", "--config.batch.size=12"])
    with pytest.raises(ConfigError, match=re.escape("batch.size = 12; expected a multiple of the 8")):
        validate_config(config)


def test_a_valid_run_reports_its_warnings_before_its_first_step(tiny_trainer, tmp_path, standard_promotion):
    trainer = tiny_trainer()  # m = 0.9 over 2 leader steps: 81 % of the start
    warnings = []
    result = run_training(
        trainer.config, tmp_path / "run", progress=False, stop_after=0, trainer=trainer, warn=warnings.append
    )
    (warning,) = warnings
    assert "bilevel.ema = 0.9" in warning and "81%" in warning
    assert result["tables"].startswith("stopped after step 0")
