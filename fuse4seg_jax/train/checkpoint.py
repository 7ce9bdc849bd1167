"""Orbax checkpoints of the train state: save every N steps, verify, restore exactly, on any device count.

Restoring takes an abstract target (shapes, dtypes and *the current mesh's* shardings), so a state
saved on 8 devices restores on 1 or 4: orbax reads each array into whatever layout is asked for.

Damage: orbax writes a step into a temporary folder and renames it when complete (its commit
marker), which guards against a kill during the save, not against a file damaged afterwards (a
full disk, an interrupted copy of the run folder). So each finished save also records the size and
SHA-256 of every file of the step in ``<step>/fuse4seg_checksums.json``; :meth:`Checkpoints.verify`
recomputes them, and a checkpoint that fails (or that orbax cannot read) is never restored silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

from fuse4seg_jax.atomic import atomic_file
from fuse4seg_jax.errors import DataError

CHECKSUMS = "fuse4seg_checksums.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(folder)): p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != CHECKSUMS
    }


class Checkpoints:
    """A run's checkpoint folder (``<workdir>/checkpoints``), keeping the last ``keep`` steps."""

    def __init__(self, directory: str | Path, keep: int = 2):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        )

    def save(self, step: int, state: Any) -> None:
        """Save ``state`` as checkpoint ``step``, wait until it is on disk, record its checksums."""
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()
        folder = self.directory / str(step)
        record = {
            name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for name, p in _files(folder).items()
        }
        with atomic_file(folder / CHECKSUMS) as f:
            json.dump(record, f, indent=1, sort_keys=True)

    def steps(self) -> list[int]:
        """Every checkpointed step, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def verify(self, step: int) -> str | None:
        """``None`` if checkpoint ``step`` is intact, else what is wrong with it (one line)."""
        folder = self.directory / str(step)
        recorded = folder / CHECKSUMS
        if not recorded.is_file():
            # saved before checksums were recorded, or killed just after orbax committed: orbax's
            # own marker then says whether the save completed
            if (folder / "commit_success.txt").is_file():
                return None
            return f"{recorded} is missing (the save did not finish, or the folder was copied in part)"
        try:
            expected = json.loads(recorded.read_text())
        except (OSError, json.JSONDecodeError) as err:
            return f"{recorded} cannot be read ({err})"
        present = _files(folder)
        for name, want in expected.items():
            path = folder / name
            if name not in present:
                return f"{path} is missing"
            size = path.stat().st_size
            if size != want["bytes"]:
                return f"{path} has {size} bytes, {want['bytes']} were written"
            if _sha256(path) != want["sha256"]:
                return f"{path} differs from what was written (checksum mismatch)"
        return None

    def restore(self, abstract_state: Any, step: int | None = None) -> Any:
        """Restore checkpoint ``step`` (default: the latest) into ``abstract_state``'s layout after
        verifying it.

        Raises:
            DataError: the checkpoint is damaged (the message names the file).
        """
        step = self.latest_step() if step is None else step
        problem = self.verify(step)
        if problem is not None:
            raise DataError(f"checkpoint step {step} in {self.directory} is damaged: {problem}")
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def restore_latest_intact(self, abstract_state: Any) -> tuple[Any, int] | None:
        """The newest checkpoint that verifies, restored, with its step; ``None`` if there is none.

        Damaged newer checkpoints are moved aside to ``<checkpoints>.damaged/<step>`` (kept, not
        deleted, and out of the way of the steps that will be saved again), each with a line on
        stderr that names it.

        Raises:
            DataError: checkpoints exist but every one is damaged; nothing is moved or deleted.
        """
        steps = self.steps()
        if not steps:
            return None
        problems = {}
        for step in reversed(steps):
            problems[step] = self.verify(step)
            if problems[step] is None:
                break
        else:
            listing = "; ".join(f"step {s}: {p}" for s, p in problems.items())
            raise DataError(
                f"every checkpoint in {self.directory} is damaged ({listing}); nothing was deleted. "
                f"Start again with --overwrite, or restore the folder from a copy"
            )
        damaged = [s for s, p in problems.items() if p is not None]
        aside = self.directory.with_name(f"{self.directory.name}.damaged")
        for s in damaged:
            aside.mkdir(exist_ok=True)
            target, copy = aside / str(s), 1
            while target.exists():  # the same step damaged again after it was saved anew
                target, copy = aside / f"{s}.{copy}", copy + 1
            os.replace(self.directory / str(s), target)
            print(
                f"warning: checkpoint step {s} is damaged ({problems[s]}); moved to {target}, "
                f"resuming from step {step}",
                file=sys.stderr,
            )
        if damaged:  # the manager caches the steps it saw
            self._manager.reload()
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state)), step

    def close(self) -> None:
        self._manager.close()
