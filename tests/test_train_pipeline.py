"""The Fuse4Seg pipeline end to end on tiny phantom data: every solver, resume, NaN, the CLI."""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bilevel
from fuse4seg_jax import data
from fuse4seg_jax.cli import main
from fuse4seg_jax.train.loop import batch_for, ensure_dataset, run_training
from fuse4seg_jax.train.objectives import microbatched
from fuse4seg_jax.train.rundir import read_metrics
from fuse4seg_jax.train.sharding import put_batch

# Each solver compiles its own bi-level step (1-5 minutes on 2 cores); the default run keeps the
# paper's solver, the rest are marked slow (tests/test_bilevel_* check every solver's numbers).
SOLVERS = [
    "first_order",
    pytest.param("implicit_cg", marks=pytest.mark.slow),
    pytest.param("unrolled", marks=pytest.mark.slow),
    pytest.param("implicit_neumann", marks=pytest.mark.slow),
    pytest.param("finite_difference", marks=pytest.mark.slow),
    pytest.param("joint", marks=pytest.mark.slow),
]

pytestmark = pytest.mark.usefixtures("standard_promotion")


@pytest.mark.parametrize("solver", SOLVERS)
def test_every_solver_takes_finite_outer_steps(solver, tiny_trainer, tiny_batches):
    trainer = tiny_trainer(f"--config.bilevel.solver={solver}")
    state = trainer.init_state()
    tr, val = (put_batch(trainer.mesh, b) for b in tiny_batches)
    k = trainer.config.bilevel.inner_steps
    inner_batches = jax.tree.map(lambda x: np.broadcast_to(x, (k, *x.shape)), tr)

    def hypergradient(follower, leader, follower_opt):
        return bilevel.hypergradient(
            trainer.problem,
            trainer.solver,
            follower,
            leader,
            trainer.follower_opt,
            follower_opt,
            inner_batches,
            val,
        ).hypergrad

    # its tree traced, not compiled: the step below compiles the same graph
    hypergrad = jax.eval_shape(hypergradient, state["follower"], state["leader"], state["follower_opt"])
    assert jax.tree.map(lambda g: (g.shape, g.dtype), hypergrad) == jax.tree.map(
        lambda p: (p.shape, p.dtype), state["leader"]
    )
    before = jax.tree.map(np.asarray, state["leader"])
    for _ in range(2):
        state, metrics = trainer.steps["bilevel"](state, tr, val)
        assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["inner_loss"]))
        # a finite norm means every entry of the hypergradient the leader stepped with is finite
        assert np.isfinite(float(metrics["hypergrad_norm"])) and float(metrics["hypergrad_norm"]) > 0
    assert int(state["step"]) == 2
    after = jax.tree.leaves(state["leader"])
    moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), after, strict=True)]
    assert any(moved), "the leader did not move"


def test_distinct_inner_batches_give_the_inner_steps_k_different_batches(tiny_trainer, tiny_overrides):
    trainer = tiny_trainer("--config.bilevel.distinct_inner_batches=True")
    config, k = trainer.config, trainer.config.bilevel.inner_steps
    src = data.open_split(ensure_dataset(config), "train")
    tr, val = batch_for("bilevel", src, config, 0)
    stacked = trainer.inner_batches(put_batch(trainer.mesh, tr))
    assert stacked["image"].shape == (k, config.batch.tr_size, *tr["image"].shape[1:])
    for step in range(k):  # inner step t sees draw t: rows b K + t
        np.testing.assert_array_equal(np.asarray(stacked["slice"][step]), tr["slice"][step::k])
    assert not np.array_equal(np.asarray(stacked["slice"][0]), np.asarray(stacked["slice"][1]))
    plain = tiny_trainer()  # the default: one draw, K copies
    (tr, _) = batch_for("bilevel", src, plain.config, 0)
    copies = plain.inner_batches(put_batch(plain.mesh, tr))
    assert all(np.array_equal(np.asarray(copies["slice"][t]), tr["slice"]) for t in range(k))


@pytest.fixture(scope="module")
def trained_run(tiny_trainer, tmp_path_factory):
    """A finished tiny run: (its trainer, its run directory)."""
    trainer = tiny_trainer()
    workdir = tmp_path_factory.mktemp("trained") / "run"
    with jax.numpy_dtype_promotion("standard"):
        run_training(trainer.config, workdir, progress=False, trainer=trainer)
    return trainer, workdir


def test_resume_reproduces_the_uninterrupted_run(trained_run, tmp_path):
    trainer, a = trained_run
    config = trainer.config
    # the same run as a kill one step after its checkpoint at step 2 leaves it: step 3 logged,
    # its checkpoint never written ...
    run_training(config, tmp_path / "b", progress=False, stop_after=3, trainer=trainer)
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "3")
    assert [r["step"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl")] == [1, 2, 3]
    # ... and resumed: the step logged after the checkpoint is recomputed, not duplicated
    run_training(config, tmp_path / "b", resume=True, progress=False, trainer=trainer)
    # bit-exact on CPU: the same batches (a function of seed and step), the same programs
    assert read_metrics(a / "metrics.jsonl") == read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert json.loads((a / "scores.json").read_text()) == json.loads(
        (tmp_path / "b" / "scores.json").read_text()
    )


@pytest.mark.slow
def test_a_solvers_state_is_checkpointed_and_resumed(trained_run, tiny_trainer, tmp_path):
    # stateless solvers leave the train state as it was
    assert "solver" not in trained_run[0].init_state()
    # F2SA carries a follower copy and its optimiser state: the cheapest stateful step to compile
    trainer = tiny_trainer("--config.bilevel.solver=f2sa")
    state = trainer.init_state()
    assert jax.tree.map(jnp.shape, state["solver"].penalized) == jax.tree.map(jnp.shape, state["follower"])
    config = trainer.config
    run_training(config, tmp_path / "a", progress=False, trainer=trainer)
    # stopped (and checkpointed) after the first of the two bi-level steps (5 and 6), then resumed:
    # step 6 starts from the restored copy, so a lost or stale copy would change its numbers
    run_training(config, tmp_path / "b", progress=False, stop_after=5, trainer=trainer)
    run_training(config, tmp_path / "b", resume=True, progress=False, trainer=trainer)
    resumed = read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert read_metrics(tmp_path / "a" / "metrics.jsonl") == resumed
    assert resumed[-1]["step"] == 6 and resumed[-1]["residual"] != 0


def test_resume_survives_a_damaged_checkpoint_and_a_killed_writer(
    trained_run, tiny_overrides, tmp_path, capsys
):
    from test_train_run_folder import _HOLDER, _truncate_largest_file, _with_repo_path

    trainer, a = trained_run
    run = tmp_path / "c"
    shutil.copytree(a, run)
    newest = max(int(p.name) for p in (run / "checkpoints").iterdir())
    _truncate_largest_file(run / "checkpoints" / str(newest))
    cli = ["train", "--config", "configs/smoke.py", *tiny_overrides, "--workdir", str(run), "--resume"]
    # a first process holds the run folder: a second `train` is refused, naming it
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run)], stdout=subprocess.PIPE, text=True, env=_with_repo_path()
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(cli) == 2
        assert f"process {holder.pid}@" in capsys.readouterr().err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # inference trusts no damaged checkpoint
    assert (
        main(["fuse", "--run", str(run), "--case", str(tmp_path), "--out", str(tmp_path / "f.nii.gz")]) == 2
    )
    assert f"checkpoint step {newest} in" in capsys.readouterr().err
    # resume falls back to the previous checkpoint and ends where the uninterrupted run ended
    run_training(trainer.config, run, resume=True, progress=False, trainer=trainer)
    assert f"checkpoint step {newest} is damaged" in capsys.readouterr().err
    assert read_metrics(a / "metrics.jsonl") == read_metrics(run / "metrics.jsonl")
    assert json.loads((a / "scores.json").read_text()) == json.loads((run / "scores.json").read_text())
    # every checkpoint damaged: a clear error, exit 2, nothing deleted
    for step in (run / "checkpoints").iterdir():
        _truncate_largest_file(step)
    before = sorted(run.rglob("*"))
    assert main(cli) == 2
    assert "every checkpoint in" in capsys.readouterr().err
    assert sorted(run.rglob("*")) == before


@pytest.mark.parametrize("key", ["loss", "residual"])  # a loss and a solver diagnostic
def test_a_non_finite_bilevel_metric_stops_the_run_and_keeps_the_last_good_checkpoint(
    key, trained_run, tmp_path, monkeypatch
):
    from fuse4seg_jax.errors import TrainingError

    trainer, _ = trained_run
    last = trainer.plan.total
    real_step = trainer.steps["bilevel"]

    def step_with_nan(state, *batches):  # the real step, with one metric going bad at the last step
        state, metrics = real_step(state, *batches)
        if int(state["step"]) == last:
            metrics = {**metrics, key: jnp.asarray(jnp.nan, jnp.float32)}
        return state, metrics

    monkeypatch.setitem(trainer.steps, "bilevel", step_with_nan)
    with pytest.raises(TrainingError, match=f"bilevel step {last}: non-finite {key};") as info:
        run_training(trainer.config, tmp_path / "run", progress=False, trainer=trainer)
    kept = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept and kept[-1] < last and f"the last good checkpoint is step {kept[-1]}" in str(info.value)
    assert "--resume" in str(info.value)
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")][-1] == last - 1
    assert not (tmp_path / "run" / "scores.json").exists()


def test_a_run_leaves_its_report_pictures_and_scores(trained_run):
    _, workdir = trained_run
    for name in ("report.md", "gallery.png", "losses.png", "hypergradient.png", "scores.csv"):
        assert (workdir / name).stat().st_size > 0
    report = (workdir / "report.md").read_text()
    assert "| WT |" in report and "Dice" in report and "![gallery.png](gallery.png)" in report
    scores = json.loads((workdir / "scores.json").read_text())
    assert 0.0 <= scores["summary"]["Dice WT"]["mean"] <= 1.0


def test_fuse_and_segment_write_volumes_with_the_input_geometry(trained_run, tmp_path):
    import SimpleITK as sitk

    trainer, workdir = trained_run
    case_dir = sorted(Path(trainer.config.data.manual_dir).iterdir())[0]
    seg_in = next(case_dir.glob("*_seg.nii.gz"))
    assert (
        main(
            [
                "segment",
                "--run",
                str(workdir),
                "--case",
                str(case_dir),
                "--out",
                str(tmp_path / "seg.nii.gz"),
                "--fused-out",
                str(tmp_path / "fused.nii.gz"),
            ]
        )
        == 0
    )
    assert (
        main(
            ["fuse", "--run", str(workdir), "--case", str(case_dir), "--out", str(tmp_path / "fused2.nii.gz")]
        )
        == 0
    )
    reference = sitk.ReadImage(str(seg_in))
    seg = sitk.ReadImage(str(tmp_path / "seg.nii.gz"))
    fused = sitk.ReadImage(str(tmp_path / "fused.nii.gz"))
    for image in (seg, fused):
        assert image.GetSize() == reference.GetSize()
        assert image.GetSpacing() == reference.GetSpacing()
        assert image.GetOrigin() == reference.GetOrigin()
    assert set(np.unique(sitk.GetArrayFromImage(seg))) <= {0, 1, 2, 4}  # BraTS 2021 label values
    values = sitk.GetArrayFromImage(fused)
    assert values.min() >= 0.0 and values.max() <= 1.0
    np.testing.assert_array_equal(
        values, sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "fused2.nii.gz")))
    )


def test_evaluate_on_what_segment_wrote_scores_as_the_training_report(trained_run, tmp_path):
    trainer, workdir = trained_run
    report = {row["case"]: row for row in json.loads((workdir / "scores.json").read_text())["cases"]}
    manual = Path(trainer.config.data.manual_dir)
    for case in report:  # the eval split's cases, by id: their folders are in the manual dir
        segment = ["segment", "--run", str(workdir), "--case", str(manual / case)]
        assert main([*segment, "--out", str(tmp_path / "pred" / f"{case}.nii.gz")]) == 0
        (tmp_path / "truth" / case).mkdir(parents=True)
        shutil.copy(next((manual / case).glob("*_seg.nii.gz")), tmp_path / "truth" / case)
    out = tmp_path / "evaluation"
    args = [
        "evaluate",
        "--pred",
        str(tmp_path / "pred"),
        "--truth",
        str(tmp_path / "truth"),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    scored = json.loads((out / "scores.json").read_text())["cases"]
    assert [row["case"] for row in scored] == list(report)
    for row in scored:
        scores = {k: v for k, v in row.items() if k not in ("case", "status")}
        assert "Dice WT" in scores and "HD95 (mm) ET" in scores
        assert scores == pytest.approx({k: report[row["case"]][k] for k in scores}, rel=1e-6, abs=1e-9)


def test_segment_without_a_trained_run_names_the_folder(tmp_path, capsys):
    assert main(["segment", "--run", str(tmp_path), "--case", str(tmp_path), "--out", "x.nii.gz"]) == 2
    assert "config.json is missing" in capsys.readouterr().err


def test_gradient_accumulation_matches_the_whole_batch():
    # micro-batch means equal whole-batch means for losses that are means over samples or pixels;
    # batch soft Dice and the decomposition ratio are not such means (see objectives.microbatched).
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(8, 5, 3)).astype(np.float32), "label": np.zeros((8, 5), np.int32)}
    weights, bias = rng.normal(size=(3, 2)).astype(np.float32), np.float32(0.3)

    def loss(w, b, batch):
        residual = jnp.tanh(batch["image"] @ w) - b
        return jnp.mean(residual**2), {"abs": jnp.mean(jnp.abs(residual))}

    whole = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(weights, bias, batch)
    micro = jax.value_and_grad(microbatched(loss, 4), argnums=(0, 1), has_aux=True)(weights, bias, batch)
    for x, y in zip(jax.tree.leaves(whole), jax.tree.leaves(micro), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="does not split into 3 micro-batches"):
        microbatched(loss, 3)(weights, bias, batch)


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_parameters(tiny_trainer, tiny_batches):
    trainer = tiny_trainer("--config.precision=bfloat16")
    tr, val = (put_batch(trainer.mesh, b) for b in tiny_batches)
    state, metrics = trainer.steps["bilevel"](trainer.init_state(), tr, val)
    assert np.isfinite(float(metrics["loss"]))
    assert {x.dtype for x in jax.tree.leaves(state["leader"])} == {np.dtype("float32")}


def test_export_brats_fuse_writes_every_combination_and_completes_a_partial_export(
    trained_run, tmp_path, capsys
):
    import csv

    from PIL import Image

    trainer, workdir = trained_run
    out = tmp_path / "brats_fuse"
    argv = ["export-brats-fuse", "--run", str(workdir), "--manual-dir", trainer.config.data.manual_dir]
    argv += ["--out", str(out), "--cases", "1"]
    assert main(argv) == 0
    with open(out / "index.csv") as f:
        rows = list(csv.DictReader(f))
    combos = {r["combination"] for r in rows}
    assert len(combos) == 6 + 4 + 1 and {"t1ce+flair", "t1+t1ce+t2+flair"} <= combos
    slices = {(r["case"], r["slice"]) for r in rows}
    assert len(rows) == len(combos) * len(slices) > 0
    indexed = {r[column] for r in rows for column in ("fused", "t1", "t1ce", "t2", "flair", "seg")}
    assert indexed == {str(p.relative_to(out)) for p in out.rglob("*.png")}
    first = {p: np.asarray(Image.open(p), np.int16) for p in sorted(out.rglob("fused_*.png"))}
    removed = list(first)[::2]
    for p in removed:
        p.unlink()
    capsys.readouterr()
    assert main(argv) == 0
    assert f"{len(removed)} PNGs written" in capsys.readouterr().out
    # the second run fuses only what was missing, to the same images: up to one grey level, as a
    # slice fused in another position of its chunk may round the other way
    again = {p: np.asarray(Image.open(p), np.int16) for p in sorted(out.rglob("fused_*.png"))}
    assert again.keys() == first.keys()
    assert max(int(np.abs(again[p] - first[p]).max()) for p in removed) <= 1
    assert main([*argv, "--combinations", "2,5"]) == 2
    assert "5 is not a combination size" in capsys.readouterr().err


@pytest.mark.slow
def test_the_exactness_monitor_logs_its_metrics_every_m_outer_steps(tiny_trainer, tmp_path):
    from fuse4seg_jax.train.monitor import KEYS

    trainer = tiny_trainer("--config.bilevel.monitor.every=2", "--config.stages.bilevel=3")
    run_training(trainer.config, tmp_path / "run", progress=False, trainer=trainer)
    records = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["stage"] == "bilevel"]
    watched = [r["step"] - records[0]["step"] for r in records if "monitor_cosine" in r]
    assert watched == [0, 2]  # bi-level steps 1 and 3 of 3
    for r in records:
        if "monitor_cosine" in r:
            assert -1 <= r["monitor_cosine"] <= 1 and r["monitor_rel_error"] >= 0
            assert r["monitor_smallest"] <= r["monitor_largest"]
    assert set(KEYS) <= set().union(*records)
