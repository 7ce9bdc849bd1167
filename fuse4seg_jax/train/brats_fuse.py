"""The BraTS-Fuse benchmark export: every modality combination of BraTS cases fused by a run.

Fuse4Seg v1 ("Image-Level Fusion Based Multi-Modality Medical Image Segmentation", Data
Processing, stages III-IV) builds its benchmark from BraTS 2021 as 2-D axial PNG slices of the
sources, the ground truth and the fused images of every combination of two, three and four
modalities. The paper gives no folder layout; ours, under the output folder::

    index.csv                                one row per (case, slice, combination)
    <case>/<slice>/{t1,t1ce,t2,flair}.png    the sources, normalised as ``prepare`` does
    <case>/<slice>/seg.png                   the ground truth, BraTS label values (0, 1, 2, 4 or 3)
    <case>/<slice>/fused_<m1>+<m2>[+...].png the run's EMA leader on those modalities

``<slice>`` is the slice's index along the slice axis (Z), three digits. Images are 8-bit, ``round(255 x)`` of
the [0, 1] values; slices are those of the crop window (``fuse4seg_jax.data.slicing``) that hold
brain. Every file is written atomically and a file already there is kept, so a rerun completes
an interrupted export; ``index.csv`` is rewritten at the end of each run.

A leader fuses a combination of k modalities when its parameters do not depend on the number of
modalities (``frequency_decoupled`` shares its encoder and sums over modalities); otherwise only
combinations of the run's own N can be exported.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from PIL import Image
from tqdm.auto import tqdm

from fuse4seg_jax import data, models
from fuse4seg_jax.atomic import atomic_file
from fuse4seg_jax.data.brats import MODALITIES, CaseFiles, check_case_files
from fuse4seg_jax.data.slicing import nonempty_slices, to_slices
from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.train.choices import model_arguments
from fuse4seg_jax.train.evaluation import in_chunks
from fuse4seg_jax.train.trainer import State, Trainer

COMBINATION_SIZES = (2, 3, 4)
INDEX_COLUMNS = ("case", "slice", "combination", "fused", *MODALITIES, "seg")


def combinations(sizes: Sequence[int]) -> list[tuple[str, ...]]:
    """Every combination of :data:`~fuse4seg_jax.data.brats.MODALITIES` of the given sizes, in order.

    Raises:
        ConfigError: a size outside 2..4.
    """
    for k in sizes:
        if k not in COMBINATION_SIZES:
            raise ConfigError(f"--combinations: {k} is not a combination size (choose from 2, 3, 4)")
    return [c for k in sorted(set(sizes)) for c in itertools.combinations(MODALITIES, k)]


def combination_name(modalities: Sequence[str]) -> str:
    """``("t1ce", "flair") -> "t1ce+flair"``."""
    return "+".join(modalities)


def fusion_model_for(trainer: Trainer, leader: models.Params, k: int) -> models.PureModel:
    """The run's leader architecture built for ``k`` modalities, sharing the run's parameters.

    Raises:
        ConfigError: the leader's parameters depend on the number of modalities (or it takes no
            other number), so the run cannot fuse ``k``.
    """
    config = trainer.config
    trained_on = len(config.data.modalities)
    if k == trained_on:
        return trainer.fusion
    name = config.model.fusion
    module = nnx.eval_shape(
        lambda: models.build("fusion", name, rngs=nnx.Rngs(0), **model_arguments(config, "fusion", k))
    )
    model, params = models.split_module(module, name=f"fusion/{name}")
    shapes = [(x.shape, x.dtype) for x in jax.tree.leaves(params)]
    if jax.tree.structure(params) != jax.tree.structure(leader) or shapes != [
        (x.shape, x.dtype) for x in jax.tree.leaves(leader)
    ]:
        raise ConfigError(
            f"the run's fusion model {name!r} has parameters that depend on the number of modalities: "
            f"trained on {trained_on}, it cannot fuse {k} (choose --combinations {trained_on})"
        )
    return model


def fuser(trainer: Trainer, leader: models.Params, k: int) -> Callable[[np.ndarray], np.ndarray]:
    """``images (S, H, W, k) -> fused (S, H, W)`` in [0, 1], by the run's leader for ``k`` modalities."""
    objectives = dataclasses.replace(trainer.objectives, fusion=fusion_model_for(trainer, leader, k))
    fuse = jax.jit(lambda params, x: {"fused": objectives.fuse(params, x)["fused"][..., 0]})
    return lambda images: in_chunks(lambda x: fuse(leader, x), trainer.mesh, images)["fused"]


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a 2-D uint8 array as a PNG, atomically."""
    with atomic_file(path, "wb") as f:
        Image.fromarray(image).save(f, format="PNG")


def _grey(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


@dataclasses.dataclass
class ExportCounts:
    """What an export did: ``rows`` of the index, PNGs ``written`` now and ``kept`` from before."""

    rows: int = 0
    written: int = 0
    kept: int = 0


def export_case(
    files: CaseFiles,
    out: Path,
    fusers: dict[int, Callable],
    combos: list[tuple[str, ...]],
    counts: ExportCounts,
) -> list[dict]:
    """Write one case's slices (missing files only) and return its index rows."""
    check_case_files(files, MODALITIES, need_seg=True)
    case = data.load_case(files, MODALITIES)
    slices = to_slices(case.images)
    labels = to_slices(data.to_brats(case.label, case.naming))
    keep = nonempty_slices(slices)
    folder = lambda s: out / case.case_id / f"{s:03d}"  # noqa: E731

    def write_missing(name: str, make: Callable[[np.ndarray], np.ndarray]) -> None:
        missing = [s for s in keep if not (folder(s) / name).exists()]
        counts.kept += len(keep) - len(missing)
        if missing:
            for s, image in zip(missing, make(np.asarray(missing)), strict=True):
                write_png(folder(s) / name, image)
            counts.written += len(missing)

    for c, modality in enumerate(MODALITIES):
        write_missing(f"{modality}.png", lambda idx, c=c: _grey(slices[idx, ..., c]))
    write_missing("seg.png", lambda idx: labels[idx])
    rows = []
    for combo in combos:
        name = f"fused_{combination_name(combo)}.png"
        fuse, channels = fusers[len(combo)], [MODALITIES.index(m) for m in combo]
        write_missing(name, lambda idx, fuse=fuse, ch=channels: _grey(fuse(slices[idx][..., ch])))
        for s in keep:
            where = folder(s).relative_to(out)
            rows.append(
                {
                    "case": case.case_id,
                    "slice": int(s),
                    "combination": combination_name(combo),
                    "fused": str(where / name),
                    **{m: str(where / f"{m}.png") for m in MODALITIES},
                    "seg": str(where / "seg.png"),
                }
            )
    return rows


def export(
    trainer: Trainer,
    state: State,
    cases: Sequence[CaseFiles],
    out: str | Path,
    sizes: Sequence[int] = COMBINATION_SIZES,
    *,
    progress: bool = True,
) -> ExportCounts:
    """Export ``cases`` as the BraTS-Fuse benchmark under ``out`` (layout: module docstring).

    Arguments:
        trainer, state: a run (``fuse4seg_jax.train.inference.load_run``); its EMA leader fuses.
        cases: BraTS case files holding all four modalities and a segmentation.
        out: the output folder (created; files already there are kept).
        sizes: combination sizes, any of 2, 3, 4.
        progress: show a progress bar over cases.

    Returns:
        The counts of index rows and of PNGs written and kept.

    Raises:
        ConfigError: a bad size, or a leader that cannot fuse a requested size.
        DataError: a case without one of the four modalities or its segmentation.
    """
    out = Path(out)
    combos = combinations(sizes)
    fusers = {k: fuser(trainer, state["ema"], k) for k in sorted({len(c) for c in combos})}
    counts = ExportCounts()
    rows = []
    for files in tqdm(cases, desc="export", disable=not progress, dynamic_ncols=True):
        rows += export_case(files, out, fusers, combos, counts)
    with atomic_file(out / "index.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=INDEX_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    counts.rows = len(rows)
    return counts
