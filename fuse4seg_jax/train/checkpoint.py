"""Orbax checkpoints of the train state: save every N steps, restore exactly, on any device count.

Restoring takes an abstract target (shapes, dtypes and *the current mesh's* shardings), so a state
saved on 8 devices restores on 1 or 4: orbax reads each array into whatever layout is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp


class Checkpoints:
    """A run's checkpoint folder (``<workdir>/checkpoints``), keeping the last ``keep`` steps."""

    def __init__(self, directory: str | Path, keep: int = 2):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        )

    def save(self, step: int, state: Any) -> None:
        """Save ``state`` as checkpoint ``step`` and wait until it is on disk.

        Orbax writes into a temporary folder and renames it when complete, so a run killed
        mid-save leaves the previous checkpoint as the latest one.
        """
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def restore(self, abstract_state: Any, step: int | None = None) -> Any:
        """Restore checkpoint ``step`` (default: the latest) into ``abstract_state``'s layout."""
        step = self.latest_step() if step is None else step
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def close(self) -> None:
        self._manager.close()
