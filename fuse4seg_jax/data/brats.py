"""Read BraTS cases (2021 and 2023 naming) with SimpleITK and write predictions back.

Arrays are indexed ``(X, Y, Z)`` as in the NIfTI header (SimpleITK's own arrays are ``(Z, Y, X)``);
spacing and origin are in mm. Labels are internal classes 0 background, 1 NCR, 2 ED, 3 ET; on disk
ET is 4 in BraTS 2021 and 3 in BraTS 2023.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fuse4seg_jax.data.preprocess import normalise_volume
from fuse4seg_jax.errors import ConfigError, DataError

MODALITIES = ("t1", "t1ce", "t2", "flair")
DEFAULT_MODALITIES = ("t1ce", "flair")

# naming -> (file-name pattern, our modality name -> the naming's suffix, on-disk ET label)
_NAMINGS: dict[str, tuple[re.Pattern, dict[str, str], int]] = {
    "2021": (
        re.compile(r"^(?P<id>.+)_(?P<suffix>t1|t1ce|t2|flair|seg)\.nii(\.gz)?$"),
        {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair"},
        4,
    ),
    "2023": (
        re.compile(r"^(?P<id>.+)-(?P<suffix>t1n|t1c|t2w|t2f|seg)\.nii(\.gz)?$"),
        {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"},
        3,
    ),
}
_SPACING_TOL_MM = 1e-4
_ORIGIN_TOL_MM = 1e-3
_DIRECTION_TOL = 1e-4


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
        spacing: ``(3,)`` voxel size in mm along X, Y, Z.
        origin: ``(3,)`` position of voxel 0 in mm.
        direction: ``(3, 3)`` direction cosines.
        naming: ``"2021"`` or ``"2023"`` (decides the ET label :func:`write_like` writes).

    The geometry fields are exactly what SimpleITK's ``CopyInformation`` copies, so a Case holds
    plain numpy only and :func:`write_like` rebuilds the header from them.
    """

    case_id: str
    modalities: tuple[str, ...]
    images: np.ndarray
    label: np.ndarray | None
    spacing: np.ndarray
    origin: np.ndarray
    direction: np.ndarray
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
    for naming, (pattern, suffixes, _) in _NAMINGS.items():
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


# NIfTI header: sizeof_hdr -> (offset of datatype (int16), offset and type of vox_offset)
_NIFTI_HEADERS = {348: (70, 108, "f4"), 540: (12, 168, "i8")}
_NIFTI_FLOATS = {16: "f4", 64: "f8"}


def _check_raw(path: Path) -> None:
    """Decompress the whole file (catches truncation, which ITK reads silently) and count NaN/inf
    voxels in float data (which ITK's NIfTI reader silently turns into 0)."""
    import gzip
    import zlib

    try:
        data = gzip.open(path).read() if path.name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot read NIfTI (truncated or corrupt: {err})") from None
    for order in "<>":
        size = np.frombuffer(data[:4], dtype=f"{order}i4")[0] if len(data) >= 4 else 0
        if size in _NIFTI_HEADERS and len(data) >= size:
            dtype_at, offset_at, offset_type = _NIFTI_HEADERS[size]
            datatype = int(np.frombuffer(data, f"{order}i2", 1, dtype_at)[0])
            offset = int(np.frombuffer(data, f"{order}{offset_type}", 1, offset_at)[0])
            if datatype in _NIFTI_FLOATS:
                dtype = np.dtype(f"{order}{_NIFTI_FLOATS[datatype]}")
                voxels = np.frombuffer(data, dtype, (len(data) - offset) // dtype.itemsize, offset)
                bad = int(np.count_nonzero(~np.isfinite(voxels)))
                if bad:
                    raise DataError(f"{path}: {bad} NaN or infinite voxels")
            return


def _read(path: Path):
    import SimpleITK as sitk

    _check_raw(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        raise DataError(f"{path}: cannot read NIfTI ({reason})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(
            f"{path}: expected a 3-D scalar volume, got {image.GetDimension()}-D "
            f"with {image.GetNumberOfComponentsPerPixel()} components"
        )
    return image


def _check_same_geometry(image, path: Path, ref, ref_path: Path) -> None:
    checks = (
        ("size", image.GetSize(), ref.GetSize(), 0.0),
        ("spacing", image.GetSpacing(), ref.GetSpacing(), _SPACING_TOL_MM),
        ("origin", image.GetOrigin(), ref.GetOrigin(), _ORIGIN_TOL_MM),
        ("direction", image.GetDirection(), ref.GetDirection(), _DIRECTION_TOL),
    )
    for what, got, want, tol in checks:
        if not np.allclose(got, want, rtol=0.0, atol=tol):
            raise DataError(
                f"{path}: {what} {tuple(np.round(got, 4))} differs from {ref_path.name} "
                f"{tuple(np.round(want, 4))}"
            )


def _array(image) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(image).transpose(2, 1, 0)


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
    paths = [case.images[m] for m in modalities]
    ref_path = paths[0]
    ref = _read(ref_path)
    channels = []
    for path in paths:
        image = ref if path == ref_path else _read(path)
        _check_same_geometry(image, path, ref, ref_path)
        channels.append(normalise_volume(_array(image).astype(np.float32)))
    label = None
    if case.seg is not None:
        seg_image = _read(case.seg)
        _check_same_geometry(seg_image, case.seg, ref, ref_path)
        label = to_internal(_array(seg_image), case.naming, case.seg)
    return Case(
        case_id=case.case_id,
        modalities=modalities,
        images=np.stack(channels, axis=-1),
        label=label,
        spacing=np.asarray(ref.GetSpacing(), dtype=np.float64),
        origin=np.asarray(ref.GetOrigin(), dtype=np.float64),
        direction=np.asarray(ref.GetDirection(), dtype=np.float64).reshape(3, 3),
        naming=case.naming,
    )


def to_internal(seg: np.ndarray, naming: str, path: str | os.PathLike = "seg") -> np.ndarray:
    """Map on-disk BraTS labels to internal classes 0..3 (ET 4 (2021) or 3 (2023) -> 3).

    Raises:
        DataError: naming ``path`` and the unexpected values.
    """
    et = _NAMINGS[naming][2]
    allowed = (0, 1, 2, et)
    values = np.unique(seg)
    unexpected = [v.item() for v in values if v not in allowed]
    if unexpected:
        raise DataError(f"{path}: unexpected label values {unexpected} (BraTS {naming} uses {list(allowed)})")
    lut = np.zeros(max(allowed) + 1, dtype=np.int32)
    lut[list(allowed)] = (0, 1, 2, 3)
    return lut[seg.astype(np.int64)]


def to_brats(label: np.ndarray, naming: str) -> np.ndarray:
    """Map internal classes 0..3 back to the on-disk labels of ``naming`` (uint8)."""
    return np.array([0, 1, 2, _NAMINGS[naming][2]], dtype=np.uint8)[np.asarray(label, dtype=np.int64)]


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
    """
    import SimpleITK as sitk

    array = np.asarray(array)
    size = reference.images.shape[:3]
    if array.shape != size:
        raise ValueError(f"array shape {array.shape} differs from case {reference.case_id} {size}")
    data = to_brats(array, reference.naming) if labels else array.astype(np.float32)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    image.SetSpacing(reference.spacing.tolist())
    image.SetOrigin(reference.origin.tolist())
    image.SetDirection(reference.direction.ravel().tolist())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    # Not atomic_file: SimpleITK writes by file name and picks the format from its suffix.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.partial-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        sitk.WriteImage(image, tmp, True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
