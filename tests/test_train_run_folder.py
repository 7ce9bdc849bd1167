"""A run folder: checkpoints verified before they are trusted, one writer at a time, library chatter
in its log file."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fuse4seg_jax.errors import ConfigError, DataError
from fuse4seg_jax.train.checkpoint import CHECKSUMS, Checkpoints
from fuse4seg_jax.train.rundir import LOCK, MetricsLog, library_log, read_metrics, run_lock


def _state(value: float) -> dict:
    return {"w": jnp.full((64, 64), value, jnp.float32), "step": jnp.asarray(int(value), jnp.int32)}


def _abstract() -> dict:
    return jax.eval_shape(lambda: _state(0.0))


def _truncate_largest_file(folder: Path) -> Path:
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS]
    victim = max(files, key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    return victim


@pytest.fixture
def saved(tmp_path) -> Checkpoints:
    checkpoints = Checkpoints(tmp_path / "checkpoints", keep=3)
    for step in (2, 4, 6):
        checkpoints.save(step, _state(float(step)))
    yield checkpoints
    checkpoints.close()


def test_intact_checkpoints_verify_and_restore_exactly(saved):
    assert saved.steps() == [2, 4, 6]
    assert all(saved.verify(step) is None for step in saved.steps())
    state, step = saved.restore_latest_intact(_abstract())
    assert step == 6
    np.testing.assert_array_equal(state["w"], np.full((64, 64), 6.0, np.float32))


def test_a_damaged_newest_checkpoint_is_moved_aside_and_the_previous_one_restored(saved, capsys):
    victim = _truncate_largest_file(saved.directory / "6")
    assert str(victim) in saved.verify(6)
    with pytest.raises(DataError, match="checkpoint step 6 .* is damaged"):
        saved.restore(_abstract(), 6)
    state, step = saved.restore_latest_intact(_abstract())
    assert step == 4 and int(state["step"]) == 4
    err = capsys.readouterr().err
    assert "checkpoint step 6 is damaged" in err and "resuming from step 4" in err
    aside = saved.directory.with_name("checkpoints.damaged") / "6"
    assert aside.is_dir()  # kept for inspection, not deleted
    assert saved.steps() == [2, 4]
    saved.save(6, _state(6.5))  # the step can be saved again
    assert saved.verify(6) is None


def test_every_checkpoint_damaged_is_an_error_and_deletes_nothing(saved):
    for step in saved.steps():
        _truncate_largest_file(saved.directory / str(step))
    before = sorted(p for p in saved.directory.rglob("*"))
    with pytest.raises(DataError, match="every checkpoint in .* is damaged.*nothing was deleted"):
        saved.restore_latest_intact(_abstract())
    assert sorted(p for p in saved.directory.rglob("*")) == before


def test_a_missing_checksum_record_falls_back_to_orbax_commit_marker(saved):
    (saved.directory / "6" / CHECKSUMS).unlink()
    assert saved.verify(6) is None  # orbax committed it: a save killed between the two writes
    (saved.directory / "6" / "commit_success.txt").unlink()
    assert "is missing" in saved.verify(6)


def _with_repo_path() -> dict:
    return {**os.environ, "PYTHONPATH": str(Path.cwd())}


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from fuse4seg_jax.train.rundir import run_lock
    with run_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(600)
    """
)


def test_a_second_writer_is_refused_naming_the_first_until_it_is_killed(tmp_path, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        text=True,
        env=_with_repo_path(),
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=f"process {holder.pid}@"), run_lock(tmp_path / "run"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_lock(tmp_path / "run"):  # the kernel released the killed holder's lock
        assert f"{os.getpid()}@" in (tmp_path / "run" / LOCK).read_text()
    assert f"names process {holder.pid}@" in capsys.readouterr().err
    assert (tmp_path / "run" / LOCK).read_text() == ""  # a clean release leaves no name behind


@pytest.mark.parametrize("verbose", [False, True])
def test_library_warnings_go_to_the_log_file_not_the_progress_bar(tmp_path, capsys, verbose):
    terminal = logging.StreamHandler(sys.stderr)  # what importing orbax installs in a plain process
    logging.getLogger().addHandler(terminal)
    try:
        with library_log(tmp_path / "library.log", verbose=verbose):
            logging.getLogger("absl").warning("waiting for the previous save")
            logging.getLogger("orbax").error("something broke")
        err = capsys.readouterr().err
        assert ("waiting for the previous save" in err) == verbose
        assert "something broke" in err  # errors always reach the terminal
        text = (tmp_path / "library.log").read_text()
        assert (
            "WARNING absl: waiting for the previous save" in text and "ERROR orbax: something broke" in text
        )
        logging.getLogger("absl").warning("after the run")
        assert "after the run" in capsys.readouterr().err  # the terminal's level is restored
    finally:
        logging.getLogger().removeHandler(terminal)


def test_a_log_line_torn_by_a_kill_is_dropped_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"loss": 1.0, "step": 1}\n{"loss": 0.5, "step": 2}\n{"loss": 0.2, "st')
    log = MetricsLog(path, restored_step=2)
    log.write({"step": 3, "loss": 0.1})
    log.close()
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]


def test_the_hypergradient_plot_shows_only_the_diagnostics_the_solver_sets():
    from fuse4seg_jax.train.report import solver_panels

    first_order = [{"hypergrad_norm": 2.0, "residual": 0.0, "iterations": 0, "reason": 0}] * 3
    assert solver_panels(first_order) == ("hypergrad_norm",)
    cg = [{"hypergrad_norm": 2.0, "residual": 1e-3, "iterations": 10, "reason": 0}, {"loss": 1.0}]
    assert solver_panels(cg) == ("hypergrad_norm", "residual", "iterations")
