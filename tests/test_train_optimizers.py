"""Per-parameter-set optimisers: defaults as before, each set's own keys, step decay, checks."""

import jax.numpy as jnp
import numpy as np
import pytest

from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.train.checks import validate_config
from fuse4seg_jax.train.config import load_config
from fuse4seg_jax.train.optimizers import make_optimizer, optimizer_settings
from fuse4seg_jax.train.stages import in_steps

ONE_DEVICE = "--config.mesh.data=1"


def _updates(opt, count: int) -> list[float]:
    """The updates of a scalar parameter under a constant gradient of 1."""
    params = jnp.zeros(())
    state, out = opt.init(params), []
    for _ in range(count):
        update, state = opt.update(jnp.ones(()), state, params)
        out.append(float(update))
    return out


def test_unset_keys_inherit_the_shared_ones_as_before():
    config = load_config("configs/demo.py")
    o = config.optim
    for parameter_set in ("leader", "follower"):
        settings = optimizer_settings(config, parameter_set)
        assert (settings["name"], settings["schedule"]) == (o.optimizer, o.schedule)
        assert settings["weight_decay"] == o.weight_decay and settings["lr"] == o[f"{parameter_set}_lr"]
    for parameter_set in ("pretrain", "discriminator"):  # pre-training never had weight decay
        assert optimizer_settings(config, parameter_set)["weight_decay"] == 0.0


def test_each_set_can_have_its_own_optimizer():
    config = load_config(
        "configs/demo.py",
        ["--config.optim.follower.name=sgd", "--config.optim.follower.momentum=0.5"]
        + ["--config.optim.follower.weight_decay=1e-4", "--config.optim.leader.schedule=constant"],
    )
    follower, leader = optimizer_settings(config, "follower"), optimizer_settings(config, "leader")
    assert (follower["name"], follower["momentum"], follower["weight_decay"]) == ("sgd", 0.5, 1e-4)
    assert (leader["name"], leader["schedule"]) == ("adamw", "constant")


def test_sgd_momentum_and_the_step_schedule_by_hand():
    # lr 0.1 halved every 2 updates; without momentum the update is -lr
    plain = make_optimizer("sgd", 0.1, 10, weight_decay=0.0, schedule="step", decay_every=2, momentum=0.0)
    np.testing.assert_allclose(_updates(plain, 5), [-0.1, -0.1, -0.05, -0.05, -0.025], rtol=1e-6)
    # heavy ball, constant lr 0.1, momentum 0.5: velocity 1, 1.5, 1.75
    heavy = make_optimizer("sgd", 0.1, 10, weight_decay=0.0, schedule="constant", momentum=0.5)
    np.testing.assert_allclose(_updates(heavy, 3), [-0.1, -0.15, -0.175], rtol=1e-6)


def test_decay_every_counts_epochs_of_the_sets_stage():
    config = load_config(
        "configs/demo.py",
        ["--config.stages.unit=epochs", "--config.optim.pretrain.decay_every=2"]
        + ["--config.optim.leader.decay_every=3", "--config.batch.tr_size=2"],
    )
    steps = in_steps(config, train_slices=40)
    assert steps.optim.pretrain.decay_every == 2 * 10  # 40 slices / batch.size 4
    assert steps.optim.leader.decay_every == 3 * 20  # bi-level epochs: 40 / batch.tr_size 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.follower.name=adam", "optim.follower.name = 'adam'; expected one of adamw, sgd"),
        ("optim.leader.schedule=linear", "optim.leader.schedule = 'linear'; expected one of cosine"),
        ("optim.leader.schedule=step", "optim.leader.decay_every = 0; expected an integer >= 1"),
        ("optim.follower.momentum=1.0", "optim.follower.momentum = 1.0; expected 0 <= momentum < 1"),
        ("optim.pretrain.weight_decay=-1.0", "optim.pretrain.weight_decay = -1.0; expected a number >= 0"),
        ("optim.discriminator.decay_rate=0.0", "optim.discriminator.decay_rate = 0.0; expected 0 <"),
    ],
)
def test_a_bad_set_key_is_named(override, message):
    config = load_config("configs/demo.py", [ONE_DEVICE, f"--config.{override}"])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        validate_config(config)
