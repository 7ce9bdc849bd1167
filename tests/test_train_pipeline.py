"""The Fuse4Seg pipeline end to end on tiny phantom data: every solver, resume, NaN, the CLI."""

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bilevel
from fuse4seg_jax.cli import main
from fuse4seg_jax.train.loop import run_training
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
