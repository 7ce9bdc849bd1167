"""The data layer: file formats, BraTS cases, slicing, the tfds slice dataset, batches, paired images.

Names are imported on first use (PEP 562), so ``import fuse4seg_jax.data`` and the command
line's ``--help`` do not pay for TensorFlow Datasets and SimpleITK. The tfds builder
``fuse4seg_brats`` is registered once :mod:`fuse4seg_jax.data.slices_builder` is imported
(by ``prepare_dataset``, ``open_split`` or ``Fuse4segBrats``).
"""

import importlib

_EXPORTS = {
    "gather": "batching",
    "patient_split_batch": "batching",
    "sample_batch": "batching",
    "DEFAULT_MODALITIES": "brats",
    "MODALITIES": "brats",
    "Case": "brats",
    "CaseFiles": "brats",
    "case_folder": "brats",
    "discover_cases": "brats",
    "load_case": "brats",
    "write_like": "brats",
    "SliceSource": "dataset",
    "available_splits": "dataset",
    "dataset_path": "dataset",
    "open_split": "dataset",
    "prepare_dataset": "dataset",
    "read_image": "images",
    "read_png": "images",
    "rgb_to_ycbcr": "images",
    "ycbcr_to_rgb": "images",
    "ET_LABELS": "labels",
    "check_label_values": "labels",
    "naming_of": "labels",
    "to_brats": "labels",
    "to_internal": "labels",
    "Geometry": "nifti",
    "read_nifti": "nifti",
    "write_nifti": "nifti",
    "PairSource": "pair_source",
    "open_pair_splits": "pair_source",
    "Pair": "paired",
    "read_paired_folder": "paired",
    "restore_colour": "paired",
    "write_phantom": "phantom",
    "normalise_volume": "preprocess",
    "SLICE_AXIS": "slicing",
    "crop_window": "slicing",
    "restack": "slicing",
    "to_slices": "slicing",
    "BratsConfig": "slices_builder",
    "Fuse4segBrats": "slices_builder",
    "brats_config": "slices_builder",
    "split_cases": "splits",
    "write_synthetic_pairs": "synthetic_pairs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__
