"""Configs, overrides, stage plans and run directories: what a user types and what it means."""

import json

import pytest

from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.train.config import load_config, to_json
from fuse4seg_jax.train.defaults import base_config
from fuse4seg_jax.train.rundir import MetricsLog, open_run, read_metrics
from fuse4seg_jax.train.stages import STAGES, StagePlan


def test_overrides_are_typed_and_checked():
    c = load_config(
        "configs/demo.py",
        [
            "--config.bilevel.solver=implicit_cg",
            "--config.stages.bilevel=7",
            "--config.optim.leader_lr=1e-5",
            "--config.data.modalities=('t1','t2','flair')",
            "--config.bilevel.options.unrolled.scan_inner=true",
            "--config.mesh.shard_params=True",
        ],
    )
    assert c.bilevel.options.unrolled.scan_inner is True
    assert c.mesh.shard_params is True
    assert c.bilevel.solver == "implicit_cg"
    assert c.stages.bilevel == 7
    assert c.optim.leader_lr == pytest.approx(1e-5)
    assert c.data.modalities == ("t1", "t2", "flair")


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.bilevel.solverr=x", "unknown config key 'bilevel.solverr'"),
        ("--config.nope.solver=x", "unknown config key 'nope'"),
        ("--config.stages.bilevel=abc", "bad value for config key 'stages.bilevel'"),
        ("--config.mesh.shard_params=yes", "bad value for config key 'mesh.shard_params'"),
        ("--config.stages.bilevel", "expected --config.<key>=<value>"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config("configs/demo.py", [override])


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.py")


def test_baselines_keep_compute_equal():
    full = load_config("configs/demo.py")
    avg = load_config("configs/baseline_average.py:demo")
    disjoint = load_config("configs/baseline_disjoint.py:demo")
    follower_updates = full.stages.follower + full.bilevel.inner_steps * full.stages.bilevel
    assert avg.stages.follower == follower_updates and avg.stages.bilevel == 0
    assert avg.eval_input == "average" and avg.stages.pretrain == 0  # it has no leader to pre-train
    assert disjoint.stages.fusion == full.stages.bilevel
    assert disjoint.stages.follower == follower_updates and disjoint.eval_input == "fused"
    # Fuse4Seg Table 3's rows: components added one by one to a disjoint autoencoder
    rows = [
        load_config(f"configs/table3_{r}.py:demo") for r in ("disjoint", "variant_a", "variant_b", "full")
    ]
    assert [r.stages.bilevel > 0 for r in rows] == [False, True, True, True]
    assert [r.loss.weights.decomp > 0 for r in rows] == [False, False, True, True]
    assert [r.loss.weights.grad > 0 for r in rows] == [False, False, False, True]
    autoencoder = rows[0]
    assert autoencoder.loss.pretrain_decomp == 0.0 and autoencoder.eval_input == "fused"
    assert autoencoder.stages.pretrain == full.stages.pretrain + full.stages.bilevel
    assert autoencoder.stages.follower == follower_updates and autoencoder.stages.fusion == 0
    assert to_json(rows[3]) == to_json(full)
    with pytest.raises(ConfigError, match="rejected argument 'tiny'"):
        load_config("configs/baseline_average.py:tiny")


def test_stage_plan_locates_steps():
    c = base_config()
    with pytest.raises(ConfigError, match="stages.unit = 'epochs'"):
        StagePlan.from_config(c)  # the paper's epochs need a data set to count steps
    c.stages.unit = "steps"
    c.stages.pretrain, c.stages.fusion, c.stages.follower, c.stages.bilevel = 2, 0, 3, 4
    plan = StagePlan.from_config(c)
    assert plan.total == 9
    assert [plan.locate(s) for s in (0, 1, 2, 4, 5, 8)] == [
        ("pretrain", 0),
        ("pretrain", 1),
        ("follower", 0),
        ("follower", 2),
        ("bilevel", 0),
        ("bilevel", 3),
    ]
    assert plan.end_of("follower") == 5 and plan.end_of("fusion") == 0
    with pytest.raises(IndexError):
        plan.locate(9)


def test_run_directory_refuses_another_run(tmp_path):
    c = load_config("configs/demo.py")
    workdir = open_run(tmp_path / "run", c, resume=False, overwrite=False)
    assert json.loads((workdir / "config.json").read_text()) == json.loads(to_json(c))
    with pytest.raises(ConfigError, match="already holds a run"):
        open_run(workdir, c, resume=False, overwrite=False)
    other = load_config("configs/demo.py", ["--config.loss.weights.decomp=2.0"])
    with pytest.raises(ConfigError, match="differs in loss.weights.decomp"):
        open_run(workdir, other, resume=True, overwrite=False)
    lower_lr = load_config("configs/demo.py", ["--config.optim.leader_lr=1e-5"])
    open_run(workdir, lower_lr, resume=True, overwrite=False)  # allowed: how a NaN run continues
    open_run(workdir, other, resume=False, overwrite=True)
    assert json.loads((workdir / "config.json").read_text())["loss"]["weights"]["decomp"] == 2.0


def test_a_run_recorded_before_a_key_existed_resumes_with_its_default(tmp_path, capsys):
    c = load_config("configs/demo.py")
    workdir = open_run(tmp_path / "run", c, resume=False, overwrite=False)
    recorded = json.loads((workdir / "config.json").read_text())
    del recorded["bilevel"]["options"]["unrolled"]["store_linearization"]
    (workdir / "config.json").write_text(json.dumps(recorded))
    open_run(workdir, c, resume=True, overwrite=False)
    assert "bilevel.options.unrolled.store_linearization" in capsys.readouterr().err
    del recorded["bilevel"]["options"]["unrolled"]["remat"]
    recorded["loss"]["weights"]["decomp"] = 2.0  # a real difference still refuses
    (workdir / "config.json").write_text(json.dumps(recorded))
    with pytest.raises(ConfigError, match=r"differs in loss\.weights\.decomp \("):
        open_run(workdir, c, resume=True, overwrite=False)


def test_metrics_log_drops_lines_after_the_restored_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, restored_step=0)
    for step in (10, 20, 30):
        log.write({"step": step, "stage": "follower", "loss": float(step)})
    log.close()
    log = MetricsLog(path, restored_step=20)
    log.write({"step": 30, "stage": "follower", "loss": 3.0})
    log.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [(10, 10.0), (20, 20.0), (30, 3.0)]


def test_a_slow_leader_ema_for_the_rollout_is_warned_about():
    from fuse4seg_jax.train.checks import config_warnings

    assert config_warnings(load_config("configs/demo.py")) == []
    paper_ema = load_config("configs/demo.py", ["--config.bilevel.ema=0.99"])
    (warning,) = config_warnings(paper_ema)
    assert "bilevel.ema" in warning and "61%" in warning  # 0.99 ** 50
    assert config_warnings(load_config("configs/brats2021_t1ce_flair.py")) == []
    average = load_config("configs/baseline_average.py:demo", ["--config.bilevel.ema=0.99"])
    assert config_warnings(average) == []  # no leader steps: nothing to warn about


def test_each_solver_has_its_registered_options_and_only_the_chosen_ones_are_read():
    import bilevel
    from fuse4seg_jax.train.choices import solver_from_config

    c = base_config()
    assert c.bilevel.options.to_dict() == {n: bilevel.solver_options(n) for n in bilevel.solver_names()}
    assert c.bilevel.options.unrolled.truncate is None  # all K steps, no sentinel
    unrolled = load_config(
        "configs/demo.py",
        ["--config.bilevel.solver=unrolled", "--config.bilevel.options.unrolled.truncate=3"],
    )
    assert solver_from_config(unrolled).truncate == 3
    mean = load_config(
        "configs/demo.py",
        ["--config.bilevel.solver=implicit_cg", "--config.bilevel.options.implicit_cg.hessian_batch=mean"],
    )
    assert solver_from_config(mean).hessian_batch == "mean"
    # another solver's bad option is not read
    other = load_config("configs/demo.py", ["--config.bilevel.options.implicit_cg.hessian_batch=median"])
    assert type(solver_from_config(other)) is bilevel.FirstOrder


def test_bad_solver_options_name_the_solver_and_option(tmp_path):
    from fuse4seg_jax.train.choices import solver_from_config

    with pytest.raises(ConfigError, match=r"'bilevel\.options\.implicit_cg\.nope'"):
        load_config("configs/demo.py", ["--config.bilevel.options.implicit_cg.nope=1"])
    bad = load_config(
        "configs/demo.py",
        ["--config.bilevel.solver=implicit_cg", "--config.bilevel.options.implicit_cg.hessian_batch=median"],
    )
    with pytest.raises(ConfigError, match=r"bilevel\.options\.implicit_cg\.hessian_batch = 'median'"):
        solver_from_config(bad)
    # an option a config file adds (before the config is locked) is caught when the solver is built
    path = tmp_path / "extra_option.py"
    path.write_text(
        "from fuse4seg_jax.train.defaults import demo_config\n"
        "def get_config():\n"
        "    c = demo_config()\n"
        "    c.bilevel.solver = 'joint'\n"
        "    c.bilevel.options.joint.wieght = 2.0\n"
        "    return c\n"
    )
    with pytest.raises(ConfigError, match=r"bilevel\.options\.joint\.wieght = 2\.0.*valid options: "):
        solver_from_config(load_config(path))


def test_every_registered_model_has_its_paper_and_demo_sizes_in_the_configs():
    from fuse4seg_jax import models
    from fuse4seg_jax.train.choices import runtime_arguments

    for family in models.FAMILIES:
        assert runtime_arguments(base_config(), family, 2).keys() == set(models.RUNTIME_ARGUMENTS[family])
        paper, demo = (
            base_config().model[f"{family}_sizes"],
            load_config("configs/demo.py").model[f"{family}_sizes"],
        )
        assert sorted(paper) == sorted(demo) == models.names(family)
        for name in models.names(family):
            assert paper[name].to_dict() == models.sizes(family, name, "paper")
            assert demo[name].to_dict() == models.sizes(family, name, "demo")
            assert sorted(paper[name]) == sorted(demo[name])  # every size is overridable in both
    # the demo sizes of the default leader and follower are the ones the README's demo has used
    demo = load_config("configs/demo.py").model
    assert demo.fusion_sizes.frequency_decoupled.dim == 16
    assert demo.segmentation_sizes.convnext_unet.widths == (16, 32, 64)


def test_epochs_become_passes_over_the_prepared_train_split(tiny_overrides):
    import math

    from fuse4seg_jax import data
    from fuse4seg_jax.train.loop import ensure_dataset
    from fuse4seg_jax.train.stages import in_steps

    steps = load_config("configs/smoke.py", tiny_overrides)
    slices = len(data.open_split(ensure_dataset(steps), "train"))
    assert in_steps(steps, slices) is steps
    epochs = load_config(
        "configs/smoke.py",
        [
            *tiny_overrides,
            "--config.stages.unit=epochs",
            "--config.stages.follower=3",
            "--config.batch.tr_size=16",
        ],
    )
    converted = in_steps(epochs, slices)
    assert converted.stages.unit == "steps" and epochs.stages.unit == "epochs"
    assert converted.stages.follower == 3 * math.ceil(slices / epochs.batch.size)
    assert converted.stages.bilevel == epochs.stages.bilevel * math.ceil(slices / 16)
    assert converted.stages.fusion == 0
    assert StagePlan.from_config(converted).total == sum(converted.stages[k] for k in STAGES)
