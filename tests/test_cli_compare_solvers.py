"""``fuse4seg compare-solvers`` end to end on the tiny config (a fresh state, a run's checkpoint, float64),
and its answers to bad input."""

import csv

import jax
import numpy as np
import pytest

import bilevel
from fuse4seg_jax.cli import main
from fuse4seg_jax.train import solver_study
from fuse4seg_jax.train.loop import run_training

TINY_CONFIG = "configs/smoke.py"

pytestmark = pytest.mark.usefixtures("standard_promotion")


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--solvers", "first_order,implicit_cgg"], "unknown solver 'implicit_cgg'"),
        (
            ["--solvers", "implicit_cg:max_iter=0"],
            "'implicit_cg:max_iter=0': solver option max_iter must be positive",
        ),
        (["--solvers", "first_order", "--reference", "converged:grad_tl=1"], "unknown option(s) grad_tl"),
        (["--solvers", "first_order", "--run", "no/such/run"], "--run no/such/run is not a run directory"),
    ],
)
def test_bad_input_exits_2_naming_it_before_any_work(arguments, named, tmp_path, capsys):
    code = main(["compare-solvers", "--config", TINY_CONFIG, "--out", str(tmp_path / "out"), *arguments])
    assert code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_compare_solvers_writes_a_table_a_csv_and_a_plot_with_the_ift_verdict(
    tiny_overrides, tmp_path, capsys
):
    out = tmp_path / "study"
    code = _compare(out, "--solvers", "implicit_cg:max_iter=2,solve_loop=while", *tiny_overrides)
    assert code == 0
    rows = list(csv.DictReader((out / "compare_solvers.csv").open()))
    assert [r["solver"] for r in rows] == ["first_order", "implicit_cg:max_iter=2,solve_loop=while"]
    assert float(rows[0]["time_ratio"]) == 1.0 and -1 <= float(rows[1]["cosine"]) <= 1
    table = (out / "compare_solvers.md").read_text()
    assert "Reference: `unrolled`" in table and "IFT's assumptions" in table
    assert (out / "compare_solvers.png").stat().st_size > 0
    assert "| `first_order` | " in capsys.readouterr().out


@pytest.fixture(scope="module")
def warmed_run(tiny_trainer, tmp_path_factory):
    """The tiny config's run stopped after its 4 single-level steps (2 pre-training of the leader,
    then 2 of the follower), checkpointed at steps 2 and 4: ``(trainer, run directory)``."""
    trainer = tiny_trainer()
    workdir = tmp_path_factory.mktemp("warmed") / "run"
    with jax.numpy_dtype_promotion("standard"):  # built before the function-scoped fixture
        run_training(trainer.config, workdir, progress=False, stop_after=4, trainer=trainer)
    return trainer, workdir


@pytest.mark.slow
def test_a_run_s_checkpoint_step_is_the_state_studied(warmed_run):
    trainer, workdir = warmed_run
    fresh = trainer.init_state()
    _, at_2, step_2, what = solver_study.study_state(trainer.config, run=workdir, step=2, progress=print)
    _, latest, step_4, _ = solver_study.study_state(trainer.config, run=workdir, progress=print)
    assert (step_2, step_4) == (2, 4) and what == f"checkpoint step 2 of the run {workdir}"
    # pre-training moves only the leader, the follower warm-up only the follower
    assert _equal(at_2["follower"], fresh["follower"]) and not _equal(at_2["leader"], fresh["leader"])
    assert _equal(latest["leader"], at_2["leader"]) and not _equal(latest["follower"], at_2["follower"])


@pytest.mark.slow
def test_x64_studies_a_run_s_checkpoint_in_float64_and_leaves_the_process_in_float32(
    warmed_run, tiny_overrides, tmp_path
):
    trainer, workdir = warmed_run
    out = tmp_path / "study"
    run = ["--run", str(workdir), "--step", "2", "--x64"]
    code = _compare(out, *run, "--solvers", "unrolled:remat=true", *tiny_overrides)
    assert code == 0 and not jax.config.jax_enable_x64
    table = (out / "compare_solvers.md").read_text()
    assert f"State: checkpoint step 2 of the run {workdir}." in table and "float64" in table
    [row] = [r for r in csv.DictReader((out / "compare_solvers.csv").open()) if r["solver"] != "first_order"]
    # the same derivative by another program (segments recomputed): equal to float64's rounding
    assert float(row["rel_error"]) < 1e-10 and float(row["cosine"]) > 1 - 1e-12
    with jax.enable_x64(True):
        trainer, state, at, _ = solver_study.study_state(trainer.config, run=workdir, step=2, progress=print)
        call = solver_study.study_point(trainer, state, at, x64=True)
        solver = bilevel.make_solver("unrolled")
        hypergrad = jax.eval_shape(  # traced, not compiled: the command compiled it
            lambda *a: solver(call.problem, a[0], a[1], call.inner_opt, *a[2:]).hypergrad,
            call.inner_params,
            call.outer_params,
            call.inner_opt_state,
            call.inner_batches,
            call.outer_batch,
        )
    assert {leaf.dtype for leaf in jax.tree.leaves(hypergrad)} == {np.dtype("float64")}


def _compare(out, *arguments: str) -> int:
    """``compare-solvers`` on the tiny config against ``unrolled``, timed once, 3 Lanczos steps."""
    fixed = ["--config", TINY_CONFIG, "--reference", "unrolled", "--rounds", "1", "--lanczos", "3"]
    return main(["compare-solvers", *fixed, "--out", str(out), *arguments])


def _equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
