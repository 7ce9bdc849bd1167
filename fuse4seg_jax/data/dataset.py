"""Prepare a slice dataset atomically, and read a split back with random access."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from fuse4seg_jax.atomic import atomic_dir
from fuse4seg_jax.data.brats import DEFAULT_MODALITIES
from fuse4seg_jax.data.slices_builder import NAME, Fuse4segBrats, brats_config, find_cases
from fuse4seg_jax.data.splits import split_cases
from fuse4seg_jax.errors import DataError


@contextlib.contextmanager
def _remove_new_parents_on_failure(path: Path) -> Iterator[None]:
    """Remove the (empty) parents of ``path`` that this block created, if it fails."""
    new = []
    for parent in (path, *path.parents):
        if parent.exists():
            break
        new.append(parent)
    try:
        yield
    except BaseException:
        for parent in new:
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise


def prepare_dataset(
    manual_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    modalities: Sequence[str] = DEFAULT_MODALITIES,
    split_seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    overwrite: bool = False,
) -> Path:
    """Build the ``fuse4seg_brats`` slice dataset of the cases in ``manual_dir``.

    Every case's files are checked to exist before any work; the dataset is built in a temporary
    folder and renamed into place, so a failure (bad file, Ctrl-C) leaves ``data_dir`` as it was.

    Arguments:
        manual_dir: folder of BraTS 2021 / 2023 case folders (or phantoms).
        data_dir: tfds data dir; the dataset goes to ``data_dir/fuse4seg_brats/<config>/<version>``.
        modalities: channels, in order (any subset of t1, t1ce, t2, flair).
        split_seed: seed of the patient-level split.
        fractions: train, val, test fractions of the patients.
        overwrite: replace an existing dataset of the same config.

    Returns:
        The dataset folder (pass it to :func:`open_split`).

    Raises:
        ConfigError: bad modalities or fractions.
        DataError: naming the folder or file at fault; or the dataset exists and not ``overwrite``.
    """
    config = brats_config(modalities, split_seed, fractions)
    cases = find_cases(manual_dir, config.modalities)
    split_cases([c.case_id for c in cases], config.split_seed, config.fractions)
    final = dataset_path(data_dir, modalities=modalities, split_seed=split_seed, fractions=fractions)
    if final.exists() and not overwrite:
        raise DataError(f"{final} already exists; pass --overwrite to rebuild it")
    with _remove_new_parents_on_failure(final), atomic_dir(final, overwrite=True) as tmp:
        scratch = tmp / "build"
        # tfds refuses a custom config named like a built-in one: pass built-ins by name.
        known = config.name in Fuse4segBrats.builder_configs
        builder = Fuse4segBrats(config=config.name if known else config, data_dir=scratch)
        # tfds's own bars and its closing "prepared to <folder>" line name the temporary build
        # folder as if it were the dataset's place: its bars are off (the builder shows one per
        # split) and what it prints goes to the log (a run's library.log)
        tfds.display_progress_bar(False)
        with contextlib.redirect_stdout(io.StringIO()) as said:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(
                    manual_dir=str(manual_dir), try_download_gcs=False
                )
            )
        logging.getLogger(__name__).info("tfds: %s", said.getvalue().strip())
        for item in Path(builder.data_dir).iterdir():
            os.replace(item, tmp / item.name)
        shutil.rmtree(scratch)
    return final


def dataset_path(
    data_dir: str | os.PathLike,
    *,
    modalities: Sequence[str] = DEFAULT_MODALITIES,
    split_seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
) -> Path:
    """Where :func:`prepare_dataset` puts the dataset of these settings (whether or not it exists)."""
    config = brats_config(modalities, split_seed, fractions)
    return Path(data_dir) / NAME / config.name / str(Fuse4segBrats.VERSION)


def _dataset_dir(data_dir: Path) -> Path:
    if (data_dir / "dataset_info.json").is_file():
        return data_dir
    found = sorted(p.parent for p in data_dir.glob(f"{NAME}/*/*/dataset_info.json"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(f"{data_dir}: no prepared dataset (run `fuse4seg prepare --data-dir {data_dir}`)")
    raise DataError(f"{data_dir}: several prepared datasets, pass one of: {', '.join(map(str, found))}")


class SliceSource:
    """Random access to the slices of one split.

    ``src[i]`` is ``{"image": (H, W, N) float32, "label": (H, W) int32, "case_id": str,
    "slice": int, "spacing": (3,) float32}``; records are in (case id, slice) order.

    Attributes:
        case_ids: the split's patients, sorted; batches index into it.
        modalities: the channel names of ``image``.
        slice_axis: the volume axis the slices were taken along.
        volume_shapes: case id -> uncropped volume shape ``(X, Y, Z)``.
        record_case: ``(len,)`` int32 index into ``case_ids`` of each record.
        record_slice: ``(len,)`` int32 slice index of each record.
    """

    def __init__(self, source, metadata: dict, split: str):
        self._source = source
        slices = metadata["splits"][split]
        self.case_ids: tuple[str, ...] = tuple(sorted(slices))
        self.modalities: tuple[str, ...] = tuple(metadata["modalities"])
        self.slice_axis: int = int(metadata["slice_axis"])
        self.volume_shapes = {c: tuple(metadata["volume_shapes"][c]) for c in self.case_ids}
        counts = [len(slices[c]) for c in self.case_ids]
        self.record_case = np.repeat(np.arange(len(self.case_ids), dtype=np.int32), counts)
        self.record_slice = np.concatenate([np.asarray(slices[c], dtype=np.int32) for c in self.case_ids])
        if self.record_case.size != len(source):
            raise DataError(
                f"split {split!r}: metadata lists {self.record_case.size} slices, files hold {len(source)}"
            )
        starts = np.cumsum([0, *counts])
        self._ranges = {c: (starts[k], starts[k + 1]) for k, c in enumerate(self.case_ids)}

    def __len__(self) -> int:
        return int(self.record_case.size)

    def __getitem__(self, index: int) -> dict:
        return self.getitems([index])[0]

    def getitems(self, indices: Sequence[int]) -> list[dict]:
        """Read several records at once (one ArrayRecord call)."""
        records = self._source.__getitems__([int(i) for i in indices])
        for r in records:
            r["case_id"] = r["case_id"].decode() if isinstance(r["case_id"], bytes) else str(r["case_id"])
            r["slice"] = int(r["slice"])
        return records

    def slices_of(self, case_id: str) -> np.ndarray:
        """Record indices of ``case_id``, sorted by slice."""
        if case_id not in self._ranges:
            raise KeyError(f"{case_id} is not in this split")
        start, stop = self._ranges[case_id]
        return np.arange(start, stop)


def available_splits(data_dir: str | os.PathLike) -> tuple[str, ...]:
    """The splits of a prepared dataset (a split with fraction 0 is absent)."""
    path = _dataset_dir(Path(data_dir))
    return tuple(tfds.builder_from_directory(str(path)).info.metadata["splits"])


def open_split(data_dir: str | os.PathLike, split: str) -> SliceSource:
    """Open one split of a prepared dataset.

    Arguments:
        data_dir: the folder :func:`prepare_dataset` returned, or its ``data_dir`` when it holds
            exactly one prepared dataset.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        The :class:`SliceSource`.

    Raises:
        DataError: no (or several) prepared datasets, or no such split.
    """
    path = _dataset_dir(Path(data_dir))
    builder = tfds.builder_from_directory(str(path))
    metadata = dict(builder.info.metadata)
    if split not in metadata.get("splits", {}):
        raise DataError(f"{path}: no split {split!r} (has {', '.join(metadata.get('splits', {}))})")
    return SliceSource(builder.as_data_source(split), metadata, split)
