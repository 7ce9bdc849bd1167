"""``fuse4seg search`` and ``loss.caf_weights``: bad input refused whole, exact resume, the run folder."""

import json
import re

import numpy as np
import pytest

from fuse4seg_jax import cli
from fuse4seg_jax.losses import caf_term_names
from fuse4seg_jax.search.weights import preset_weights, read_weights, write_weights

SEARCH_CONFIG = "configs/caf_search.py:smoke"
NAMES = caf_term_names(2)


def weights_file(tmp_path, table):
    path = tmp_path / "weights.json"
    path.write_text(json.dumps(table))
    return path


def test_weights_files_round_trip_in_the_search_spaces_order(tmp_path):
    weights = preset_weights("random", 2, seed=3)
    write_weights(tmp_path / "w.json", weights, 2)
    assert list(json.loads((tmp_path / "w.json").read_text())) == list(NAMES)
    assert read_weights(tmp_path / "w.json", 2) == pytest.approx(weights, rel=1e-12)


def test_presets_are_points_of_the_simplex_and_cddfuse_weighs_the_maximum_terms():
    for preset in ("uniform", "cddfuse", "random"):
        assert sum(preset_weights(preset, 2, seed=0)) == pytest.approx(1.0)
    hand_made = dict(zip(NAMES, preset_weights("cddfuse", 2, seed=0), strict=True))
    assert hand_made["gradient_max"] == pytest.approx(10 / 11) and hand_made["l1_max"] == pytest.approx(
        1 / 11
    )
    assert preset_weights("random", 2, seed=0) != preset_weights("random", 2, seed=1)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({**dict.fromkeys(NAMES, 0.1), "vgg_0": 0.1}, "unknown term 'vgg_0'"),
        ({**dict.fromkeys(NAMES, 0.1), "mse_1": float("nan")}, r"mse_1 = nan; expected a finite number >= 0"),
        ({**dict.fromkeys(NAMES, 0.1), "ssim_0": -1.0}, r"ssim_0 = -1.0"),
        (
            dict.fromkeys(NAMES[:-1], 0.1),
            "has 14 terms, the 2-source search space has 15; missing perceptual_1",
        ),
        ([0.1] * 15, "holds a list"),
    ],
    ids=["unknown term", "nan", "negative", "wrong length", "not an object"],
)
def test_train_refuses_a_bad_weights_file_naming_it_and_writes_nothing(
    tmp_path, tiny_overrides, capsys, table, message
):
    path = weights_file(tmp_path, table)
    workdir = tmp_path / "run"
    argv = ["train", "--config", SEARCH_CONFIG, "--workdir", str(workdir), *tiny_overrides]
    assert cli.main([*argv, f"--config.loss.caf_weights={path}"]) == 2
    err = capsys.readouterr().err
    assert "loss.caf_weights" in err and str(path) in err
    assert re.search(message, err), err
    assert not workdir.exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "--config.eval_input=stacked --config.follower_input=stacked",
            "config key follower_input = 'stacked'; the CAF search's task network reads the fused image",
        ),
        ("--config.eval_input=average", "config key eval_input = 'average'; the CAF search's task"),
        ("--config.search.compare=('uniform','vgg')", "search.compare holds 'vgg'"),
        ("--config.search.beta_decay=0.0", "search.beta_decay = 0.0"),
        ("--config.bilevel.solver=darts", "bilevel.solver = 'darts'"),
        ("--config.data.kind=paired", "data.kind = 'paired': `fuse4seg search` needs labelled"),
    ],
)
def test_search_refuses_a_bad_config_naming_the_key_and_writes_nothing(
    tmp_path, tiny_overrides, capsys, override, message
):
    workdir = tmp_path / "run"
    argv = ["search", "--config", SEARCH_CONFIG, "--workdir", str(workdir), *tiny_overrides]
    argv += override.split()
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not workdir.exists()


@pytest.fixture(scope="module")
def smoke_search(tiny_overrides):
    """``(config, searcher)`` of the smoke search, logging and checkpointing every step."""
    from fuse4seg_jax.search.searcher import Searcher
    from fuse4seg_jax.train.config import load_config
    from fuse4seg_jax.train.sharding import make_mesh

    overrides = [
        *tiny_overrides,
        "--config.log_every=1",
        "--config.checkpoint_every=1",
        "--config.mesh.data=1",
    ]
    config = load_config(SEARCH_CONFIG, overrides)
    return config, Searcher(config, make_mesh(1), num_modalities=2)


@pytest.mark.slow
def test_a_resumed_search_continues_exactly_as_the_uninterrupted_one(
    tmp_path, smoke_search, standard_promotion
):
    from fuse4seg_jax.search.run import run_search
    from fuse4seg_jax.train.rundir import read_metrics

    config, searcher = smoke_search
    common = {"progress": False, "searcher": searcher}
    run_search(config, tmp_path / "straight", stop_after=3, **common)
    run_search(config, tmp_path / "resumed", stop_after=2, **common)
    run_search(config, tmp_path / "resumed", stop_after=3, resume=True, **common)
    straight, resumed = (read_metrics(tmp_path / d / "metrics.jsonl") for d in ("straight", "resumed"))
    assert [r["step"] for r in resumed] == [1, 2, 3]
    assert resumed == straight  # every loss, weight and diagnostic, bit for bit
    assert straight[-1]["weight.l1_0"] != pytest.approx(1 / 15, abs=1e-7)  # beta moved


@pytest.mark.slow
def test_search_writes_weights_retrains_with_them_and_reports(
    tmp_path, tiny_overrides, capsys, standard_promotion
):
    workdir = tmp_path / "run"
    argv = ["search", "--config", SEARCH_CONFIG, "--workdir", str(workdir), "--no-progress", *tiny_overrides]
    assert cli.main([*argv, "--config.mesh.data=1"]) == 0
    weights = read_weights(workdir / "weights.json", 2)
    assert sum(weights) == pytest.approx(1.0, abs=1e-5)
    for name in ("weights.png", "report.md", "retrain_searched/report.md", "retrain_searched/scores.json"):
        assert (workdir / name).is_file(), name
    assert json.loads((workdir / "retrain_searched/config.json").read_text())["loss"]["caf_weights"] == str(
        workdir / "weights.json"
    )
    assert "| searched |" in (workdir / "report.md").read_text()
    assert "mean Dice" in capsys.readouterr().out


def test_a_caf_weights_setting_adds_its_loss_to_the_fusion_objective():
    import jax
    import jax.numpy as jnp

    from fuse4seg_jax.losses import caf_weighted_loss, fixed_conv_features
    from fuse4seg_jax.train.objectives import Objectives

    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.random((2, 16, 16, 2)), jnp.float32)
    out = {"fused": jnp.asarray(rng.random((2, 16, 16, 1)), jnp.float32)}
    weights = preset_weights("random", 2, seed=0)
    objectives = Objectives(None, None, fusion_weights=(("recon", 2.0),), caf_weights=weights)

    @jax.jit
    def evaluate(out, images):
        terms = objectives.fusion_terms(out, images)
        caf = caf_weighted_loss(jnp.asarray(weights, jnp.float32), out["fused"], images, fixed_conv_features)
        return terms, objectives._fusion_penalty(terms), caf[0]

    terms, penalty, expected = evaluate(out, images)
    np.testing.assert_allclose(terms["caf"], expected, rtol=1e-6)
    np.testing.assert_allclose(penalty, expected + 2.0 * terms["recon"], rtol=1e-6)
