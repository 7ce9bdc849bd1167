"""Fuse4Seg v1 from its config: eq. 9 / 12 pre-training, the paper's optimisers, the attention gallery."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fuse4seg_jax import losses, models
from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.train.attention_gallery import attention_maps, query_token, save_attention_gallery
from fuse4seg_jax.train.checks import validate_config
from fuse4seg_jax.train.config import load_config
from fuse4seg_jax.train.loop import run_training
from fuse4seg_jax.train.objectives import Objectives, modality_major
from fuse4seg_jax.train.optimizers import optimizer_settings
from fuse4seg_jax.train.rundir import read_metrics

pytestmark = pytest.mark.usefixtures("standard_promotion")

# one trainer for the tests below (built once per session by the tiny_trainer fixture)
V1_PRETRAINING = (
    "--config.model.fusion=fuse4seg_v1",
    "--config.loss.pretrain_objective=fuse4seg_v1",
    "--config.loss.pretrain_sigma=0.25",
)


def _constant(values, shape=(1, 12, 12, 1)):
    return jnp.stack([jnp.full(shape, v, jnp.float32) for v in values])


def test_content_loss_by_hand():
    # constant images: SSIM's structure term is C2 / C2 = 1 and its luminance term
    # (2ab + C1) / (a^2 + b^2 + C1); the squared norm is (a - b)^2 per pixel
    rec, src = _constant([0.25, 0.5]), _constant([0.75, 0.5])
    first = (0.25 - 0.75) ** 2 + 1 - (2 * 0.25 * 0.75 + 1e-4) / (0.25**2 + 0.75**2 + 1e-4)
    # modality 2 adds 0; float32 leaves the local variances of a constant image at rounding
    # noise, about 1e-8, against C2 = 9e-4 in SSIM's structure term
    np.testing.assert_allclose(losses.content_loss(rec, src), first, atol=1e-4)
    assert float(losses.content_loss(src, src)) == pytest.approx(0.0, abs=1e-6)


def test_encoder_loss_weighs_correlation_by_sigma():
    rec, src = _constant([0.25, 0.5]), _constant([0.75, 0.5])
    ramp = jnp.arange(2 * 12 * 12 * 3, dtype=jnp.float32).reshape(1, 2, 12, 12, 3)
    features = jnp.concatenate([ramp, ramp])  # identical in both modalities: every CC is 1
    loss, terms = losses.encoder_loss(rec, src, features, features, sigma=0.25)
    np.testing.assert_allclose(terms["decomp"], 1 / 2.01, rtol=1e-5)  # eq. 11: 1^2 / (1 + 1.01)
    np.testing.assert_allclose(loss, 0.25 / 2.01 + 0.75 * float(losses.content_loss(rec, src)), rtol=1e-5)


def test_the_v1_pretraining_loss_is_chosen_by_the_config(tiny_trainer, tiny_batches):
    trainer = tiny_trainer(*V1_PRETRAINING)
    obj = trainer.objectives
    assert (obj.pretrain_objective, obj.pretrain_sigma) == ("fuse4seg_v1", 0.25)
    leader = trainer.init_state()["leader"]
    images = jnp.asarray(tiny_batches[0]["image"][:2])

    @jax.jit  # one compile for both: the loss and the autoencoder pass it is made of
    def loss_and_reconstruction(p, x):
        return obj.pretrain_loss(p, None, {"image": x}), obj.fusion.apply(p, x, method="autoencode")

    (loss, terms), rec = loss_and_reconstruction(leader, images)
    sources = modality_major(images)
    content = sum(
        jnp.mean((r - s) ** 2) + 1 - losses.ssim(r, s) for r, s in zip(rec["images"], sources, strict=True)
    )
    decomp = losses.decomposition_loss(rec["low"], rec["high"])
    np.testing.assert_allclose(terms["content"], content, rtol=1e-5)
    np.testing.assert_allclose(loss, 0.25 * decomp + 0.75 * content, rtol=1e-5)


def test_attention_maps_are_row_stochastic_tokens_by_tokens_per_head(tiny_trainer, tiny_batches, tmp_path):
    trainer = tiny_trainer(*V1_PRETRAINING)
    state = trainer.init_state()
    images, labels = tiny_batches[1]["image"][:3], tiny_batches[1]["label"][:3]
    maps = attention_maps(trainer, state, images)
    heads = trainer.config.model.fusion_sizes.fuse4seg_v1.heads
    tokens = (48 // 8) ** 2  # 8 x 8 cells of a 48 x 48 slice
    assert maps.shape == (3, 1, heads, tokens, tokens)
    np.testing.assert_allclose(maps.sum(axis=-1), 1.0, atol=1e-5)
    assert np.all(maps >= 0)
    samples = [
        {"image": i, "label": y, "case_id": "case", "slice": k}
        for k, (i, y) in enumerate(zip(images, labels, strict=True))
    ]
    save_attention_gallery(tmp_path / "attention.png", samples, maps, ("t1", "flair"))
    assert (tmp_path / "attention.png").stat().st_size > 1000
    # a leader without cross-attention has nothing to show
    plain = tiny_trainer()
    assert attention_maps(plain, plain.init_state(), images) is None


def test_the_query_is_the_cell_with_the_most_tumour():
    label = np.zeros((6, 9), np.int32)
    assert query_token(label, (2, 3)) == 1 * 3 + 1  # no tumour: the centre cell
    label[4:6, 6:8] = 2
    label[0, 0] = 1
    assert query_token(label, (2, 3)) == 1 * 3 + 2  # 4 tumour pixels in row 1, column 2


def test_the_v1_config_has_the_papers_optimisers_and_batch():
    c = load_config("configs/fuse4seg_v1.py")
    follower = optimizer_settings(c, "follower")
    assert (follower["name"], follower["lr"], follower["momentum"], follower["weight_decay"]) == (
        "sgd",
        0.01,
        0.9,
        1e-4,
    )
    for parameter_set in ("pretrain", "discriminator", "leader"):
        s = optimizer_settings(c, parameter_set)
        assert (s["name"], s["lr"], s["weight_decay"], s["schedule"]) == ("adamw", 1e-4, 0.0, "step")
        assert (s["decay_rate"], s["decay_every"]) == (0.5, 20)  # epochs, converted at the start
    assert (c.batch.size, c.stages.unit, c.stages.pretrain, c.stages.bilevel) == (16, "epochs", 80, 140)
    assert (c.model.fusion, c.loss.pretrain_objective, c.bilevel.solver) == (
        "fuse4seg_v1",
        "fuse4seg_v1",
        "joint",
    )


@pytest.mark.slow
def test_the_v1_config_trains_end_to_end_and_shows_its_attention(tiny_overrides, tmp_path):
    overrides = [*tiny_overrides, "--config.mesh.data=1", "--config.loss.fusion_adversarial=0.1"]
    config = load_config("configs/fuse4seg_v1.py:smoke", overrides)
    run_training(config, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    records = read_metrics(run / "metrics.jsonl")
    pretrain = [r for r in records if r["stage"] == "pretrain"]
    assert pretrain and all(k in pretrain[-1] for k in ("content", "decomp", "generator", "discriminator"))
    assert "recon" not in pretrain[-1]  # eq. 12's content loss, not CDDFuse's reconstruction term
    joint = [r for r in records if r["stage"] == "bilevel"]
    assert len(joint) == config.stages.bilevel
    assert all(k in joint[-1] for k in ("grad", "adversarial", "seg"))  # v1's L_fuse and L_seg
    report = (run / "report.md").read_text()
    assert "![attention.png](attention.png)" in report and "![gallery.png](gallery.png)" in report
    assert (run / "attention.png").stat().st_size > 1000
    saved = json.loads((run / "config.json").read_text())
    assert saved["optim"]["follower"]["name"] == "sgd" and saved["model"]["fusion"] == "fuse4seg_v1"


def test_the_fusion_adversarial_term_is_eq10_on_the_fused_image():
    fusion, leader = models.create(
        "fusion", "caf_dense", key=jax.random.key(0), num_modalities=2, width=4, growth=4, dense_layers=1
    )
    made = [
        models.create("discriminator", "fuse4seg_v1", key=jax.random.key(i + 1), width=4, depth=2)
        for i in range(2)
    ]
    judges = jax.tree.map(lambda *x: jnp.stack(x), *(p for _, p in made))
    obj = Objectives(fusion, fusion, fusion_weights=(), discriminator=made[0][0], fusion_adversarial=0.5)
    images = jax.random.uniform(jax.random.key(9), (2, 12, 12, 2))

    @jax.jit  # one compile for the objective and the value by hand
    def objective_and_by_hand(leader, judges, images):
        fused = fusion.apply(leader, images)["fused"]
        # each discriminator judges the fused image; eq. 10 sums log(1 - D_i) over the modalities
        by_hand = sum(jnp.mean(jnp.log(1 - jax.nn.sigmoid(disc.apply(p, fused)))) for disc, p in made)
        return obj.fusion_only_loss(leader, judges, {"image": images}), by_hand

    (loss, terms), want = objective_and_by_hand(leader, judges, images)
    np.testing.assert_allclose(terms["adversarial"], want, rtol=1e-4)
    np.testing.assert_allclose(loss, 0.5 * want, rtol=1e-4)


def test_the_fusion_adversarial_term_needs_pretrained_discriminators():
    config = load_config("configs/demo.py", ["--config.mesh.data=1", "--config.loss.fusion_adversarial=0.1"])
    with pytest.raises(ConfigError, match=r"loss.fusion_adversarial = 0.1: .*\(loss.adversarial > 0"):
        validate_config(config)
