"""SMFNet's two-stage training from configs/smfnet.py: each stage's loss is the paper's, via the config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fuse4seg_jax import losses
from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.train.checks import validate_config
from fuse4seg_jax.train.config import load_config
from fuse4seg_jax.train.loop import run_training
from fuse4seg_jax.train.rundir import read_metrics
from fuse4seg_jax.train.sharding import make_mesh
from fuse4seg_jax.train.smfnet_objectives import stage_one_from_config
from fuse4seg_jax.train.stages import StagePlan
from fuse4seg_jax.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("standard_promotion")

SMFNET = "configs/smfnet.py:smoke"


@pytest.fixture(scope="module")
def smfnet_trainer(tiny_overrides):
    """The Trainer of the tiny SMFNet config (its steps compile only when a test runs one)."""
    return Trainer(load_config(SMFNET, tiny_overrides), make_mesh(1), num_modalities=2)


@pytest.fixture(scope="module")
def images():
    """``(2, 12, 12, 2)`` sources, the smallest the SSIM window takes, with a dark background."""
    x = jax.random.uniform(jax.random.key(3), (2, 12, 12, 2))
    return x.at[:, :3].set(0.0)


def _features(key, channels=3):
    return jax.random.normal(jax.random.key(key), (2, 2, 12, 12, channels))


def test_the_config_runs_stage_one_stage_two_then_the_follower_with_the_paper_weights():
    config = load_config(SMFNET)
    assert [kind for kind, _ in StagePlan.from_config(config).stages] == ["pretrain", "fusion", "follower"]
    weights = config.loss.weights.to_dict()
    assert {k: weights[k] for k in ("intensity", "decomp", "grad", "recon")} == {
        "intensity": 1.0,  # eq. 28
        "decomp": 10.0,  # alpha_4
        "grad": 2.0,  # alpha_5
        "recon": 0.0,
    }
    stage_one = stage_one_from_config(config)
    assert (stage_one.ssim, stage_one.grad, stage_one.decomp, stage_one.visible_grad) == (8.0, 10.0, 2.0, 5.0)
    assert stage_one.roles == ("visible", "infrared")
    assert stage_one_from_config(load_config("configs/demo.py")) is None  # CDDFuse's objective
    paper = load_config("configs/smfnet.py", ["--config.mesh.data=1"])
    assert (paper.batch.size, paper.optim.leader_lr, paper.optim.weight_decay) == (6, 1e-4, 0.0)
    assert (paper.stages.pretrain, paper.stages.fusion, paper.stages.unit) == (40, 80, "epochs")
    for shipped in (config, paper):
        validate_config(shipped)


def _stage_one_by_hand(rec, images):
    """Eq. 17-19 written out for a visible and an infrared modality, from the library's losses."""
    (visible, infrared), sources = rec["images"], jnp.moveaxis(images, -1, 0)[..., None]
    terms = {
        "lovasz": losses.grey_level_lovasz_loss(sources[0], visible),
        "gram": losses.gram_intensity_loss(sources[1], infrared),
        "visible_grad": losses.gradient_loss(visible, sources[0]),
        "grad": losses.gradient_loss(visible, sources[0]) + losses.gradient_loss(infrared, sources[1]),
        "ssim": 2 * (losses.ssim_loss(visible, sources[0]) + losses.ssim_loss(infrared, sources[1])),
        "decomp": losses.decomposition_loss(rec["low"], rec["high"]),
    }
    t = terms  # alpha_1 2, alpha_2 5, alpha_3 8, beta_1 10
    loss = 8 * t["ssim"] + 10 * t["grad"] + t["lovasz"] + t["gram"] + 2 * t["decomp"] + 5 * t["visible_grad"]
    return loss, terms


def _assert_stage_one(loss, aux, by_hand):
    expected_loss, expected = by_hand
    for key, value in expected.items():
        np.testing.assert_allclose(aux[key], value, rtol=1e-4, err_msg=key)
    assert float(aux["gram"]) > 0 and float(aux["lovasz"]) > 0
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-4)


def test_the_configured_stage_one_loss_is_eq_17_to_19_with_the_gram_and_lovasz_terms(images):
    stage_one = stage_one_from_config(load_config(SMFNET))
    reconstructions = jax.random.uniform(jax.random.key(4), (2, *images.shape[:3], 1))
    rec = {"images": reconstructions, "low": _features(5), "high": _features(6)}
    # one program for both sides: eager dispatch of the many small ops would take longer
    (loss, aux), expected = jax.jit(lambda r, x: (stage_one(r, x), _stage_one_by_hand(r, x)))(rec, images)
    _assert_stage_one(loss, aux, expected)


def test_the_decomp_term_of_a_leader_with_interaction_features_is_eq_27(images):
    out = {
        "fused": images[..., :1] * 0.5,
        "low": _features(7),
        "high": _features(8),
        "interaction": _features(9, channels=2),
    }

    @jax.jit
    def compare(out, images):
        plain = {k: v for k, v in out.items() if k != "interaction"}
        return {
            **losses.fusion_terms(out, images, ("decomp", "intensity")),
            "eq26_term": losses.fusion_terms(plain, images, ("decomp",))["decomp"],
            "eq27": losses.decomposition_loss_with_interaction(out["low"], out["high"], out["interaction"]),
            "eq26": losses.decomposition_loss(out["low"], out["high"]),
            "max_intensity": losses.max_intensity_loss(out["fused"], images),
        }

    v = compare(out, images)
    np.testing.assert_allclose(v["decomp"], v["eq27"], rtol=1e-6)
    np.testing.assert_allclose(v["eq26_term"], v["eq26"], rtol=1e-6)
    assert float(v["eq27"]) > float(v["eq26"])  # the interaction numerator adds CC(interaction)^2 > 0
    np.testing.assert_allclose(v["intensity"], v["max_intensity"], rtol=1e-6)


@pytest.mark.slow
def test_the_pretrain_step_reports_the_gram_and_lovasz_terms_of_the_reconstructions(smfnet_trainer, images):
    obj = smfnet_trainer.objectives
    leader = smfnet_trainer.init_state()["leader"]
    loss, aux = jax.jit(obj.pretrain_loss)(leader, None, {"image": images})
    rec = jax.jit(lambda p, x: obj.fusion.apply(p, x, method="autoencode"))(leader, images)
    _assert_stage_one(loss, aux, jax.jit(_stage_one_by_hand)(rec, images))
    # and it is what the trainer's pretrain step differentiates and logs
    state = jax.eval_shape(smfnet_trainer.init_state)
    batch = {"image": images, "label": jnp.zeros(images.shape[:3], jnp.int32)}
    _, metrics = jax.eval_shape(smfnet_trainer.steps["pretrain"], state, batch)
    assert {"gram", "lovasz", "ssim", "visible_grad", "decomp"} <= set(metrics)


@pytest.mark.slow
def test_stage_two_decorrelates_the_graph_interaction_features_too(smfnet_trainer, images):
    obj = smfnet_trainer.objectives
    leader = smfnet_trainer.init_state()["leader"]
    loss, terms = jax.jit(obj.fusion_only_loss)(leader, None, {"image": images})
    out = jax.jit(obj.fusion.apply)(leader, images)
    eq27 = losses.decomposition_loss_with_interaction(out["low"], out["high"], out["interaction"])
    np.testing.assert_allclose(terms["decomp"], eq27, rtol=1e-5)
    np.testing.assert_allclose(terms["intensity"], losses.max_intensity_loss(out["fused"], images), rtol=1e-5)
    np.testing.assert_allclose(terms["grad"], losses.gradient_loss(out["fused"], images), rtol=1e-5)
    np.testing.assert_allclose(loss, terms["intensity"] + 10 * terms["decomp"] + 2 * terms["grad"], rtol=1e-5)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("--config.loss.smfnet.roles=('visible',)", r"loss.smfnet.roles = \('visible',\); expected one of"),
        ("--config.loss.smfnet.roles=('visible', 'thermal')", "loss.smfnet.roles"),
        (
            "--config.loss.pretrain_objective='cdd'",
            "loss.pretrain_objective = 'cdd'; expected one of cddfuse",
        ),
        ("--config.loss.smfnet.ssim=-1.0", "loss.smfnet.ssim = -1.0; expected a finite number >= 0"),
        ("--config.loss.adversarial=0.1", "loss.adversarial = 0.1 with loss.pretrain_objective = 'smfnet'"),
    ],
)
def test_bad_smfnet_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(load_config(SMFNET, [override]))


def test_the_config_check_runs_the_smfnet_checks():
    with pytest.raises(ConfigError, match="loss.smfnet.roles"):
        validate_config(load_config(SMFNET, ["--config.data.modalities=('t1', 't1ce', 'flair')"]))


@pytest.mark.slow
def test_the_smfnet_config_trains_end_to_end_and_writes_its_report(smfnet_trainer, tmp_path):
    workdir = tmp_path / "run"
    result = run_training(smfnet_trainer.config, workdir, progress=False, trainer=smfnet_trainer)
    records = read_metrics(workdir / "metrics.jsonl")
    assert [r["stage"] for r in records] == ["pretrain"] * 2 + ["fusion"] * 2 + ["follower"] * 2
    assert {"gram", "lovasz", "ssim"} <= set(records[0])
    assert {"intensity", "decomp", "grad"} <= set(records[2])
    assert all(np.isfinite(v) for r in records for k, v in r.items() if k != "stage")
    assert (workdir / "report.md").read_text().count("`smfnet`") == 1
    assert "EN" in result["tables"]  # the fusion scores of the fused images
    for name in ("gallery.png", "losses.png", "scores.csv"):
        assert (workdir / name).exists()


@pytest.mark.slow
def test_smfnet_leads_the_bilevel_pipeline_by_one_override(tiny_trainer, tmp_path):
    sizes = [f"--config.model.fusion_sizes.smfnet.{k}={v!r}" for k, v in (("dim", 4), ("graph_steps", 1))]
    trainer = tiny_trainer("--config.model.fusion=smfnet", *sizes)
    run_training(trainer.config, tmp_path / "run", progress=False, trainer=trainer)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["stage"] for r in records] == ["pretrain"] * 2 + ["follower"] * 2 + ["bilevel"] * 2
    bilevel = records[-1]
    assert bilevel["decomp"] > 0 and np.isfinite(bilevel["hypergrad_norm"])
