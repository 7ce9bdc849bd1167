"""Use a finished run: load its config and latest checkpoint, fuse and segment new cases.

Volumes are cut into 2-D slices and restacked by :mod:`fuse4seg_jax.data.slicing`, as ``prepare``
cut the training data, so results are full-size volumes that can be written with the input's
geometry (``fuse4seg_jax.data.write_like``).
"""

from __future__ import annotations

import json
from pathlib import Path

import ml_collections
import numpy as np

from fuse4seg_jax import data
from fuse4seg_jax.data.slicing import restack, to_slices
from fuse4seg_jax.errors import ConfigError, DataError
from fuse4seg_jax.train.checkpoint import Checkpoints
from fuse4seg_jax.train.evaluation import predict_volume
from fuse4seg_jax.train.sharding import make_mesh
from fuse4seg_jax.train.trainer import State, Trainer


def load_run(workdir: str | Path) -> tuple[Trainer, State]:
    """The trainer and latest checkpointed state of the run in ``workdir`` (on all local devices)."""
    workdir = Path(workdir)
    recorded = workdir / "config.json"
    if not recorded.is_file():
        raise DataError(f"{workdir} is not a run directory: {recorded} is missing")
    config = ml_collections.ConfigDict(json.loads(recorded.read_text()))
    checkpoints = Checkpoints(workdir / "checkpoints")
    if checkpoints.latest_step() is None:
        raise DataError(f"{workdir / 'checkpoints'} holds no checkpoint: train the run first")
    trainer = Trainer(config, make_mesh(-1), num_modalities=len(config.data.modalities))
    try:
        state = checkpoints.restore(trainer.abstract_state())
    except DataError as err:
        raise DataError(
            f"{err}; `fuse4seg train --resume` on {workdir} falls back to an intact one"
        ) from None
    checkpoints.close()
    return trainer, state


def predict_case(trainer: Trainer, state: State, case: data.Case) -> dict[str, np.ndarray]:
    """Run the follower's view (fused image) and the segmentation on a whole case.

    Returns:
        ``view (X, Y, Z, C)`` float32 and ``pred (X, Y, Z)`` int32 internal classes, zero outside
        the crop window (see :func:`fuse4seg_jax.data.slicing.restack`).
    """
    out = predict_volume(trainer, state, np.ascontiguousarray(to_slices(case.images)))
    size = case.images.shape[:3]
    return {"view": restack(out["view"], size), "pred": restack(out["pred"], size)}


def load_input_case(trainer: Trainer, case_dir: str | Path) -> data.Case:
    """Read one BraTS case folder with the modalities the run was trained on."""
    return data.load_case(data.case_folder(case_dir), tuple(trainer.config.data.modalities))


def fused_view(trainer: Trainer, view: np.ndarray, source: str) -> np.ndarray:
    """The single-channel image the follower sees, or a clear error for a multi-channel run."""
    if view.shape[-1] != 1:
        raise ConfigError(f"{source} was trained on stacked modalities: it has no fused image")
    return view[..., 0]
