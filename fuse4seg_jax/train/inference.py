"""Use a finished run: load its config and latest checkpoint, fuse and segment new cases.

Volumes are processed as 2-D slices along Z (the training slicing), with the same centre crop as
``prepare``; results are pasted back into the full volume so that they can be written with the
input's geometry (``fuse4seg_jax.data.write_like``).
"""

from __future__ import annotations

import json
from pathlib import Path

import ml_collections
import numpy as np

from fuse4seg_jax import data
from fuse4seg_jax.data.preprocess import crop_window
from fuse4seg_jax.errors import ConfigError, DataError
from fuse4seg_jax.train.checkpoint import Checkpoints
from fuse4seg_jax.train.evaluation import predict_volume
from fuse4seg_jax.train.sharding import make_mesh
from fuse4seg_jax.train.trainer import State, Trainer

SLICE_AXIS = 2


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
        the crop window.
    """
    window = crop_window(case.images.shape, SLICE_AXIS)
    images = np.moveaxis(case.images[window], SLICE_AXIS, 0)
    out = predict_volume(trainer, state, np.ascontiguousarray(images))
    full = case.images.shape[:3]
    view = np.zeros((*full, out["view"].shape[-1]), np.float32)
    pred = np.zeros(full, np.int32)
    view[window[:3]] = np.moveaxis(out["view"], 0, SLICE_AXIS)
    pred[window[:3]] = np.moveaxis(out["pred"], 0, SLICE_AXIS)
    return {"view": view, "pred": pred}


def load_input_case(trainer: Trainer, case_dir: str | Path) -> data.Case:
    """Read one BraTS case folder with the modalities the run was trained on."""
    return data.load_case(data.case_folder(case_dir), tuple(trainer.config.data.modalities))


def fused_view(trainer: Trainer, view: np.ndarray, source: str) -> np.ndarray:
    """The single-channel image the follower sees, or a clear error for a multi-channel run."""
    if view.shape[-1] != 1:
        raise ConfigError(f"{source} was trained on stacked modalities: it has no fused image")
    return view[..., 0]
