"""Find and read BraTS cases (2021 and 2023 naming) and write predictions back.

Arrays are indexed ``(X, Y, Z)`` with spacing in mm along ``X, Y, Z``, as
:mod:`fuse4seg_jax.data.nifti` reads them. Labels are internal classes 0 background, 1 NCR, 2 ED,
3 ET, mapped from and to the case's on-disk labels by :mod:`fuse4seg_jax.data.labels`. See
``docs/conventions.md#labels-and-data``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fuse4seg_jax.data.labels import to_brats, to_internal
from fuse4seg_jax.data.nifti import Geometry, check_same_geometry, read_nifti, write_nifti
from fuse4seg_jax.data.preprocess import normalise_volume
from fuse4seg_jax.errors import ConfigError, DataError

MODALITIES = ("t1", "t1ce", "t2", "flair")
DEFAULT_MODALITIES = ("t1ce", "flair")

# naming -> (file-name pattern, our modality name -> the naming's suffix)
_NAMINGS: dict[str, tuple[re.Pattern, dict[str, str]]] = {
    "2021": (
        re.compile(r"^(?P<id>.+)_(?P<suffix>t1|t1ce|t2|flair|seg)\.nii(\.gz)?$"),
        {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair"},
    ),
    "2023": (
        re.compile(r"^(?P<id>.+)-(?P<suffix>t1n|t1c|t2w|t2f|seg)\.nii(\.gz)?$"),
        {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"},
    ),
}


@dataclasses.dataclass(frozen=True)
class CaseFiles:
    """The files of one case as found on disk.

    Attributes:
        case_id: e.g. ``BraTS2021_00000`` or ``BraTS-GLI-00000-000``.
        folder: the case folder.
        naming: ``"2021"`` or ``"2023"`` (decides the on-disk ET label).
        images: our modality name (``t1``, ``t1ce``, ``t2``, ``flair``) -> file, for those present.
        seg: the segmentation file, or None.
    """

    case_id: str
    folder: Path
    naming: str
    images: dict[str, Path]
    seg: Path | None

    def expected_path(self, modality: str) -> Path:
        """Where this case's file for ``modality`` would be (used to name a missing file)."""
        suffix = _NAMINGS[self.naming][1][modality]
        sep = "_" if self.naming == "2021" else "-"
        return self.folder / f"{self.case_id}{sep}{suffix}.nii.gz"


@dataclasses.dataclass(frozen=True)
class Case:
    """One loaded, normalised case.

    Attributes:
        case_id: the case id.
        modalities: the names of the channels of ``images``.
        images: ``(X, Y, Z, N)`` float32 in [0, 1], 0 outside the brain.
        label: ``(X, Y, Z)`` int32 internal classes 0..3, or None without a seg file.
        geometry: the header of the case's files (spacing in mm along X, Y, Z); :func:`write_like`
            writes it back.
        naming: ``"2021"`` or ``"2023"`` (decides the ET label :func:`write_like` writes).
    """

    case_id: str
    modalities: tuple[str, ...]
    images: np.ndarray
    label: np.ndarray | None
    geometry: Geometry
    naming: str


def check_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    """Validate modality names: a non-empty subset of :data:`MODALITIES`, no repeats.

    Raises:
        ConfigError: naming the unknown or repeated modality.
    """
    modalities = tuple(modalities)
    for m in modalities:
        if m not in MODALITIES:
            raise ConfigError(f"unknown modality {m!r} (--modalities takes any of {', '.join(MODALITIES)})")
    if not modalities or len(set(modalities)) != len(modalities):
        raise ConfigError(f"--modalities must name distinct modalities, got {list(modalities)}")
    return modalities


def _case_in(folder: Path) -> CaseFiles | None:
    for naming, (pattern, suffixes) in _NAMINGS.items():
        found = [(f, m) for f in sorted(folder.iterdir()) if (m := pattern.match(f.name))]
        if not found:
            continue
        ids = sorted({m["id"] for _, m in found})
        if len(ids) > 1:
            raise DataError(f"{folder}: files of several cases in one folder ({', '.join(ids)})")
        ours = {suffix: name for name, suffix in suffixes.items()}
        images = {ours[m["suffix"]]: f for f, m in found if m["suffix"] != "seg"}
        seg = next((f for f, m in found if m["suffix"] == "seg"), None)
        return CaseFiles(ids[0], folder, naming, images, seg)
    return None


def case_folder(folder: str | os.PathLike) -> CaseFiles:
    """The case in one case folder (as ``fuse4seg segment --case`` takes).

    Raises:
        DataError: ``folder`` is missing or holds no BraTS 2021 / 2023 case files.
    """
    folder = Path(folder)
    case = _case_in(folder) if folder.is_dir() else None
    if case is None:
        raise DataError(f"{folder}: not a BraTS case folder (no *_t1ce.nii.gz / *-t1c.nii.gz ... files)")
    return case


def discover_cases(root: str | os.PathLike) -> list[CaseFiles]:
    """Find the BraTS cases under ``root``: one sub-folder per case, 2021 or 2023 file names.

    Arguments:
        root: the folder holding the case folders.

    Returns:
        The cases sorted by id.

    Raises:
        DataError: ``root`` is missing, or holds no case.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    cases = [c for d in sorted(root.iterdir()) if d.is_dir() and (c := _case_in(d)) is not None]
    if not cases:
        raise DataError(
            f"{root}: no BraTS cases found (expected folders such as BraTS2021_00000/ holding "
            "BraTS2021_00000_t1ce.nii.gz ..., or BraTS-GLI-00000-000/ holding "
            "BraTS-GLI-00000-000-t1c.nii.gz ...)"
        )
    return sorted(cases, key=lambda c: c.case_id)


def check_case_files(case: CaseFiles, modalities: Sequence[str], *, need_seg: bool) -> None:
    """Raise :class:`DataError` naming the first file of ``case`` that is missing."""
    for m in modalities:
        if m not in case.images:
            raise DataError(f"case {case.case_id}: missing {m} ({case.expected_path(m)} not found)")
    if need_seg and case.seg is None:
        raise DataError(f"case {case.case_id}: no segmentation file in {case.folder}")


def load_case(case: CaseFiles, modalities: Sequence[str] = DEFAULT_MODALITIES) -> Case:
    """Read, check and normalise one case.

    Each modality is normalised on its own brain mask (see :func:`normalise_volume`); the seg is
    mapped to internal classes.

    Arguments:
        case: from :func:`discover_cases`.
        modalities: which channels, in this order (any subset of :data:`MODALITIES`).

    Returns:
        The :class:`Case`.

    Raises:
        ConfigError: an unknown modality name.
        DataError: naming the file that is missing, unreadable, has NaN/inf voxels, a geometry
            different from the case's first file, or label values outside the naming's set.
    """
    modalities = check_modalities(modalities)
    check_case_files(case, modalities, need_seg=False)
    ref_path = case.images[modalities[0]]
    reference = None
    channels = []
    for m in modalities:
        volume, geometry = read_nifti(case.images[m])
        reference = reference or geometry
        check_same_geometry(geometry, case.images[m], reference, ref_path)
        channels.append(normalise_volume(volume.astype(np.float32)))
    label = None
    if case.seg is not None:
        seg, seg_geometry = read_nifti(case.seg)
        check_same_geometry(seg_geometry, case.seg, reference, ref_path)
        label = to_internal(seg, case.naming, case.seg)
    return Case(
        case_id=case.case_id,
        modalities=modalities,
        images=np.stack(channels, axis=-1),
        label=label,
        geometry=reference,
        naming=case.naming,
    )


def write_like(array: np.ndarray, reference: Case, path: str | os.PathLike, labels: bool = False) -> Path:
    """Write an ``(X, Y, Z)`` volume as NIfTI with ``reference``'s geometry, atomically.

    Arguments:
        array: ``(X, Y, Z)``, the full (uncropped) size of the reference case.
        reference: the case whose spacing, origin and direction the file takes.
        path: the file to write (``.nii.gz`` compresses).
        labels: ``array`` holds internal classes: write them as uint8 BraTS labels of the
            reference's naming (ET 4 for 2021, 3 for 2023); otherwise write float32.

    Returns:
        ``path``.

    Raises:
        ValueError: ``array`` is not the case's ``(X, Y, Z)`` size.
    """
    array = np.asarray(array)
    data = to_brats(array, reference.naming) if labels else array.astype(np.float32)
    return write_nifti(data, reference.geometry, path)
