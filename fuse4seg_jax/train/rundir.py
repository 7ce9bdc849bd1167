"""A run directory: resolved config, metrics log, checkpoints, pictures and the report.

<workdir>/config.json      the resolved config (what makes two runs "the same run")
<workdir>/metrics.jsonl    one JSON object per logged step: {"step", "stage", <scalars>}
<workdir>/checkpoints/     orbax checkpoints (see fuse4seg_jax.train.checkpoint)
<workdir>/gallery.png, losses.png, hypergradient.png, report.md, scores.csv, scores.json
<workdir>/library.log      what orbax, tfds and absl log during the run (see library_log)
<workdir>/.lock            held by the process that runs in the folder (see run_lock)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import ml_collections

from fuse4seg_jax.atomic import atomic_file
from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.train.config import diff_configs, to_json

# Keys a resumed run may change: they alter how (and on how many devices) it continues, not what
# it is. Changing the learning rate is the usual way out of a NaN.
RESUMABLE_KEYS = ("optim.", "mesh.", "eval.", "log_every", "checkpoint_every")
LOCK = ".lock"
LIBRARY_LOG = "library.log"


@contextlib.contextmanager
def run_lock(workdir: str | Path) -> Iterator[Path]:
    """Hold ``<workdir>/.lock`` for the block, so that two processes never write one run.

    The lock is ``flock``'s: the kernel releases it when its process ends, however it ends, so a
    run killed with SIGKILL leaves no lock behind. The file records the holder (``pid@host``);
    it is emptied on a clean release, so a name found in it on entry is a holder that was killed,
    which is reported.

    Raises:
        ConfigError: another process holds the lock; the message names its process id.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "unknown"
            raise ConfigError(
                f"{workdir} is in use: process {holder} is running in it ({path}); "
                f"wait for it to end or stop it first"
            ) from None
        previous = os.pread(fd, 256, 0).decode(errors="replace").strip()
        if previous:
            print(
                f"note: {path} names process {previous}, which ended without releasing it "
                f"(killed?); taking the run over",
                file=sys.stderr,
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}@{socket.gethostname()}".encode(), 0)
        try:
            yield workdir
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def library_log(path: Path, *, verbose: bool) -> Iterator[None]:
    """Send what libraries log (orbax, tfds and absl log through Python's root logger) to ``path``.

    Without ``verbose`` the terminal's handlers show errors only for the block, so that warnings
    such as orbax's at every checkpoint do not break into the progress bar; the file gets
    everything from INFO up. Levels and handlers are restored afterwards.
    """
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    terminal = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
    saved = (root.level, [h.level for h in terminal])
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for h in terminal:
        h.setLevel(logging.INFO if verbose else logging.ERROR)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(saved[0])
        for h, level in zip(terminal, saved[1], strict=True):
            h.setLevel(level)


def _holds_run(workdir: Path) -> bool:
    return workdir.exists() and any(p.name != LOCK for p in workdir.iterdir())


def _has_key(config: dict, dotted: str) -> bool:
    """Whether the nested dict ``config`` holds the dotted key ``dotted``."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def open_run(
    workdir: str | Path, config: ml_collections.ConfigDict, *, resume: bool, overwrite: bool
) -> Path:
    """Create or reopen ``workdir`` for ``config``.

    A folder that already holds a run is refused unless ``resume`` (same config required: the
    message lists the keys that differ) or ``overwrite`` (the old run is deleted). Keys the
    recorded config lacks (added to the code since the run began, a new solver option say) are
    not a difference: new keys keep the old behaviour at their defaults, and the resumed run
    names them on stderr.
    """
    workdir = Path(workdir)
    recorded = workdir / "config.json"
    if _holds_run(workdir):
        if overwrite:  # everything but the lock, which the caller may hold
            for entry in workdir.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry)
                elif entry.name != LOCK:
                    entry.unlink()
        elif not resume:
            raise ConfigError(
                f"{workdir} already holds a run; pass --resume to continue it or --overwrite to replace it"
            )
        elif not recorded.exists():
            raise ConfigError(f"{workdir} is not empty and has no config.json: not a run to resume")
        else:
            before = json.loads(recorded.read_text())
            changed = diff_configs(before, json.loads(to_json(config)))
            added = [k for k in changed if not _has_key(before, k)]
            fixed = [k for k in changed if not k.startswith(RESUMABLE_KEYS) and k not in added]
            if added and not fixed:
                print(
                    f"resuming {workdir}: keys new since it began take their defaults: {', '.join(added)}",
                    file=sys.stderr,
                )
            if fixed:
                raise ConfigError(
                    f"cannot resume {workdir}: its config differs in {', '.join(fixed)} "
                    f"(a resumed run may change only {', '.join(RESUMABLE_KEYS)})"
                )
    workdir.mkdir(parents=True, exist_ok=True)
    with atomic_file(recorded) as f:
        f.write(to_json(config))
    return workdir


class MetricsLog:
    """Append-only ``metrics.jsonl``; on resume, lines logged after the restored step are dropped.

    A line records the state *after* its step, so the checkpoint of step s keeps the line of s.
    """

    def __init__(self, path: Path, restored_step: int):
        self.path = path
        kept = []
        if path.exists():
            # a line cut short by a kill mid-write has no newline: it is dropped with the rest
            # of what came after the checkpoint (its step is past it)
            text = path.read_text()
            complete = text.splitlines()[: text.count("\n")]
            kept = [line for line in complete if line.strip() and json.loads(line)["step"] <= restored_step]
        with atomic_file(path) as f:
            f.write("".join(f"{line}\n" for line in kept))
        self._file = open(path, "a")  # noqa: SIM115 - held open for the run, closed in close()

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_metrics(path: str | Path) -> list[dict]:
    """All records of a ``metrics.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
