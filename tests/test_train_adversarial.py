"""Fuse4Seg v1 adversarial pre-training: each player gets its own objective's gradient, exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fuse4seg_jax import losses, models
from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.train.checks import config_warnings, validate_config
from fuse4seg_jax.train.config import load_config
from fuse4seg_jax.train.objectives import Objectives, modality_major
from fuse4seg_jax.train.sharding import put_batch
from fuse4seg_jax.train.stages import StagePlan

pytestmark = pytest.mark.usefixtures("standard_promotion")


def _tiny_players(n: int = 2):
    fusion, leader = models.create(
        "fusion",
        "frequency_decoupled",
        key=jax.random.key(0),
        num_modalities=n,
        dim=4,
        heads=1,
        encoder_blocks=1,
        decoder_blocks=1,
        inn_layers=1,
    )
    made = [
        models.create("discriminator", "fuse4seg_v1", key=jax.random.key(i + 1), width=4, depth=2)
        for i in range(n)
    ]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *(p for _, p in made))
    return fusion, leader, made[0][0], stacked


# each form compiles its own gradients (~1 minute); the default run checks v1's eq. 10 (minimax)
@pytest.mark.parametrize("form", ["minimax", pytest.param("non_saturating", marks=pytest.mark.slow)])
def test_each_player_gets_the_gradient_of_its_own_objective(form):
    fusion, leader, disc, discriminators = _tiny_players()
    obj = Objectives(fusion, fusion, discriminator=disc, adversarial=0.3, generator_form=form)
    images = jax.random.uniform(jax.random.key(9), (2, 12, 12, 2))
    batch = {"image": images}
    generator = {
        "minimax": losses.generator_loss_minimax,
        "non_saturating": losses.generator_loss_non_saturating,
    }[form]

    def judge(d, x):  # each discriminator on its own modality, written out without vmap
        return jnp.stack([disc.apply(jax.tree.map(lambda a, i=i: a[i], d), x[i]) for i in range(2)])

    def leader_objective(p):  # no stop_gradient anywhere: the discriminators are constants here
        rec = fusion.apply(p, images, method="autoencode")["images"]
        return obj.pretrain_loss(p, None, batch)[0] + 0.3 * 2 * generator(judge(discriminators, rec))

    def discriminator_objective(d):
        rec = fusion.apply(leader, images, method="autoencode")["images"]
        return 2 * losses.discriminator_loss(judge(d, modality_major(images)), judge(d, rec))

    # compiled: dispatching these graphs op by op took longer than compiling them
    (_, aux), (g_leader, g_disc) = jax.jit(
        jax.value_and_grad(obj.adversarial_pretrain_loss, argnums=(0, 1), has_aux=True)
    )(leader, discriminators, batch)
    leader_value, leader_grad = jax.jit(jax.value_and_grad(leader_objective))(leader)
    disc_value, disc_grad = jax.jit(jax.value_and_grad(discriminator_objective))(discriminators)
    np.testing.assert_allclose(aux["leader_loss"], leader_value, rtol=1e-5)
    np.testing.assert_allclose(aux["discriminator"], disc_value, rtol=1e-5)
    for got, want in ((g_leader, leader_grad), (g_disc, disc_grad)):
        scale = max(float(jnp.max(jnp.abs(w))) for w in jax.tree.leaves(want))
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(g, w, atol=1e-5 * scale)
    assert float(aux["generator"]) != 0.0


def test_pretrain_steps_train_both_players(tiny_trainer, tiny_overrides):
    from fuse4seg_jax import data
    from fuse4seg_jax.train.loop import ensure_dataset

    trainer = tiny_trainer("--config.loss.adversarial=0.1")  # the tiny config pre-trains 2 steps
    assert trainer.adversarial
    src = data.open_split(ensure_dataset(trainer.config), "train")
    batch = put_batch(trainer.mesh, data.sample_batch(src, 8, seed=0, step=0))
    state = trainer.init_state()
    before = jax.device_get(state["discriminators"])
    assert jax.tree.leaves(before)[0].shape[0] == 2  # one discriminator per modality
    for _ in range(2):
        state, metrics = trainer.steps["pretrain"](state, batch)
    for key in ("loss", "recon", "decomp", "generator", "discriminator", "discriminator_grad_norm"):
        assert np.isfinite(float(metrics[key])), key
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state["discriminators"]), strict=True)
    ]
    assert all(moved)
    # pre-training starts the EMA at the leader
    for e, p in zip(jax.tree.leaves(state["ema"]), jax.tree.leaves(state["leader"]), strict=True):
        np.testing.assert_array_equal(e, p)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["--config.loss.adversarial=0.1", "--config.model.discriminator=patchgan"], "model.discriminator"),
        (["--config.loss.adversarial=1", "--config.loss.generator_form=wgan"], "loss.generator_form"),
    ],
)
def test_bad_pretraining_choices_name_the_key(overrides, key):
    config = load_config("configs/demo.py", overrides)
    with pytest.raises(ConfigError, match=key):
        validate_config(config)


def test_a_leader_without_autoencoder_skips_pretraining_with_a_warning():
    config = load_config("configs/demo.py", ["--config.stages.pretrain=3", "--config.model.fusion=caf_dense"])
    (warning,) = config_warnings(config)
    assert "stages.pretrain" in warning and "'caf_dense'" in warning
    assert [kind for kind, _ in StagePlan.from_config(config).stages] == ["follower", "bilevel"]
    pretrained = load_config("configs/demo.py", ["--config.stages.pretrain=3"])
    assert config_warnings(pretrained) == []
    assert StagePlan.from_config(pretrained).stages[0] == ("pretrain", 3)
