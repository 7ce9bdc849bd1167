"""The tfds builder ``fuse4seg_brats``: BraTS volumes -> ArrayRecord 2-D slices, no TensorFlow.

Use it through :func:`fuse4seg_jax.data.prepare_dataset` (atomic, validated first), or as a plain
tfds builder once this module is imported::

    import fuse4seg_jax.data  # registers the builder
    builder = tfds.builder("fuse4seg_brats", data_dir=OUT)  # or config=brats_config(...)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=DIR))
    source = builder.as_data_source("train")

Each record is one slice: ``image`` (H, W, N) float32 in [0, 1], ``label`` (H, W) int32 internal
classes, ``case_id``, ``slice`` (index along the slice axis of the uncropped volume) and
``spacing`` (3,) float32 mm of the volume along X, Y, Z. Records are written in (case id, slice)
order (shuffling disabled) so a split's records can be restacked into volumes; the order and
every case's volume shape are stored in the dataset's ``metadata.json``.

The train split drops empty slices, meaning slices without a single brain voxel (all channels
zero after normalisation); slices with brain but no tumour stay. Val and test keep every slice.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
from tqdm.auto import tqdm

from fuse4seg_jax.data.brats import (
    DEFAULT_MODALITIES,
    CaseFiles,
    check_case_files,
    check_modalities,
    discover_cases,
    load_case,
)
from fuse4seg_jax.data.slicing import SLICE_AXIS, nonempty_slices, to_slices
from fuse4seg_jax.data.splits import SPLITS, check_fractions, split_cases
from fuse4seg_jax.errors import ConfigError, DataError

NAME = "fuse4seg_brats"
_SLICE_KEY_STRIDE = 100_000  # record key = case rank * stride + slice: sorted keys = write order


@dataclasses.dataclass(eq=False)  # as tfds.core.BuilderConfig
class BratsConfig(tfds.core.BuilderConfig):
    """Which modalities, which split and which slice axis a prepared dataset holds."""

    modalities: tuple[str, ...] = DEFAULT_MODALITIES
    split_seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    slice_axis: int = SLICE_AXIS


def brats_config(
    modalities: Sequence[str] = DEFAULT_MODALITIES,
    split_seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    slice_axis: int = SLICE_AXIS,
) -> BratsConfig:
    """A validated :class:`BratsConfig` named after its contents.

    The name reads e.g. ``t1ce-flair_seed0_70-10-20_axis2``.

    Raises:
        ConfigError: unknown modality, bad fractions or slice axis.
    """
    modalities = check_modalities(modalities)
    fractions = check_fractions(fractions)
    if slice_axis not in (0, 1, 2):
        raise ConfigError(f"slice axis must be 0, 1 or 2, got {slice_axis}")
    percent = "-".join(f"{100 * f:g}" for f in fractions)
    return BratsConfig(
        name=f"{'-'.join(modalities)}_seed{split_seed}_{percent}_axis{slice_axis}",
        description=f"modalities {', '.join(modalities)}; patient split {percent} % by seed {split_seed}",
        modalities=modalities,
        split_seed=int(split_seed),
        fractions=fractions,
        slice_axis=int(slice_axis),
    )


def find_cases(manual_dir, modalities: Sequence[str]) -> list[CaseFiles]:
    """Discover the cases of ``manual_dir`` and check every one has its files, before any work."""
    cases = discover_cases(manual_dir)
    for case in cases:
        check_case_files(case, modalities, need_seg=True)
    return cases


class Fuse4segBrats(tfds.core.GeneratorBasedBuilder):
    """2-D slices of BraTS cases (or phantoms) for fusion + segmentation."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [brats_config()]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "BraTS cannot be downloaded automatically. Put one folder per case in the manual dir: "
        "BraTS 2021 (BraTS2021_XXXXX/BraTS2021_XXXXX_{t1,t1ce,t2,flair,seg}.nii.gz) or BraTS 2023 "
        "(BraTS-GLI-XXXXX-000/BraTS-GLI-XXXXX-000-{t1n,t1c,t2w,t2f,seg}.nii.gz), or generate "
        "phantom cases with `fuse4seg phantom --out DIR`."
    )

    def __init__(self, *, file_format=None, **kwargs):
        # ArrayRecord by default: random access through as_data_source, and no TensorFlow.
        super().__init__(file_format=file_format or "array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        n = len(self.builder_config.modalities)
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.builder_config.description,
            features=tfds.features.FeaturesDict(
                {
                    # zlib: the in-plane size is only known from the data, and it halves the disk.
                    "image": tfds.features.Tensor(shape=(None, None, n), dtype=np.float32, encoding="zlib"),
                    "label": tfds.features.Tensor(shape=(None, None), dtype=np.int32, encoding="zlib"),
                    "case_id": tfds.features.Text(),
                    "slice": tfds.features.Scalar(dtype=np.int32),
                    "spacing": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                }
            ),
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(
                modalities=list(self.builder_config.modalities),
                split_seed=self.builder_config.split_seed,
                fractions=list(self.builder_config.fractions),
                slice_axis=self.builder_config.slice_axis,
                splits={},
                volume_shapes={},
            ),
        )

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        cases = find_cases(dl_manager.manual_dir, cfg.modalities)
        by_id = {c.case_id: c for c in cases}
        parts = split_cases(list(by_id), cfg.split_seed, cfg.fractions)
        return {
            name: self._generate_examples([by_id[i] for i in parts[name]], name)
            for name in SPLITS
            if parts[name]
        }

    def _generate_examples(self, cases: list[CaseFiles], split: str) -> Iterator[tuple[int, dict]]:
        cfg = self.builder_config
        meta = self.info.metadata
        meta["splits"][split] = {}
        bar = tqdm(cases, desc=f"prepare {split}", unit="case", file=sys.stderr, leave=False)
        for rank, files in enumerate(bar):
            case = load_case(files, cfg.modalities)
            images = to_slices(case.images, cfg.slice_axis)
            labels = to_slices(case.label, cfg.slice_axis)
            kept = nonempty_slices(images) if split == "train" else np.arange(images.shape[0])
            if kept.size == 0:
                raise DataError(f"{files.folder}: every slice is empty (all modalities zero)")
            meta["volume_shapes"][case.case_id] = list(case.label.shape)
            meta["splits"][split][case.case_id] = kept.tolist()
            spacing = case.geometry.spacing.astype(np.float32)
            for s in kept.tolist():
                yield (
                    rank * _SLICE_KEY_STRIDE + s,
                    {
                        "image": np.ascontiguousarray(images[s]),
                        "label": np.ascontiguousarray(labels[s]),
                        "case_id": case.case_id,
                        "slice": s,
                        "spacing": spacing,
                    },
                )
