"""Read and write NIfTI files (SimpleITK), indexed in the header's axis order.

Arrays are indexed ``(X, Y, Z)`` (``(X, Y)`` for a 2-D file), the order in which the NIfTI header
counts its axes; SimpleITK's own arrays are the reverse, ``(Z, Y, X)``. Spacing and origin are
listed in the same ``X, Y, Z`` order, in mm, so ``spacing[i]`` is the voxel size along array axis
``i``. Every reading error is a :class:`~fuse4seg_jax.errors.DataError` naming the file.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fuse4seg_jax.errors import DataError

_SPACING_TOL_MM = 1e-4
_ORIGIN_TOL_MM = 1e-3
_DIRECTION_TOL = 1e-4
# NIfTI header: sizeof_hdr -> (offset of datatype (int16), offset and type of vox_offset)
_NIFTI_HEADERS = {348: (70, 108, "f4"), 540: (12, 168, "i8")}
_NIFTI_FLOATS = {16: "f4", 64: "f8"}


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where a file's voxels lie in space, as its header says.

    Attributes:
        size: voxels along ``X, Y[, Z]``.
        spacing: ``(D,)`` voxel size in mm along ``X, Y[, Z]``.
        origin: ``(D,)`` position of voxel 0 in mm.
        direction: ``(D, D)`` direction cosines.
    """

    size: tuple[int, ...]
    spacing: np.ndarray
    origin: np.ndarray
    direction: np.ndarray


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


def read_nifti(path: str | os.PathLike, dims: Sequence[int] = (3,)) -> tuple[np.ndarray, Geometry]:
    """Read one scalar NIfTI image.

    Arguments:
        path: a ``.nii`` or ``.nii.gz`` file.
        dims: the numbers of dimensions accepted (3 for a volume; (2, 3) also takes 2-D images).

    Returns:
        ``(array, geometry)``: the voxels indexed ``(X, Y[, Z])`` in the file's own dtype, and its
        :class:`Geometry`.

    Raises:
        DataError: naming ``path``: unreadable, truncated, NaN or infinite float voxels, a
            vector image, or a number of dimensions not in ``dims``.
    """
    import SimpleITK as sitk

    path = Path(path)
    _check_raw(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        raise DataError(f"{path}: cannot read NIfTI ({reason})") from None
    ndim, components = image.GetDimension(), image.GetNumberOfComponentsPerPixel()
    if ndim not in dims or components != 1:
        wanted = " or ".join(f"{d}-D" for d in dims)
        raise DataError(
            f"{path}: expected a {wanted} scalar image, got {ndim}-D with {components} components"
        )
    geometry = Geometry(
        size=tuple(image.GetSize()),
        spacing=np.asarray(image.GetSpacing(), dtype=np.float64),
        origin=np.asarray(image.GetOrigin(), dtype=np.float64),
        direction=np.asarray(image.GetDirection(), dtype=np.float64).reshape(ndim, ndim),
    )
    return sitk.GetArrayFromImage(image).transpose(), geometry


def check_same_geometry(geometry: Geometry, path: Path, reference: Geometry, reference_path: Path) -> None:
    """Raise :class:`DataError` naming ``path`` if its size, spacing, origin or direction differ.

    Spacing and origin agree to 1e-4 mm and 1e-3 mm, direction cosines to 1e-4: the rounding of
    headers written by different tools.
    """
    checks = (
        ("size", geometry.size, reference.size, 0.0),
        ("spacing", geometry.spacing, reference.spacing, _SPACING_TOL_MM),
        ("origin", geometry.origin, reference.origin, _ORIGIN_TOL_MM),
        ("direction", geometry.direction.ravel(), reference.direction.ravel(), _DIRECTION_TOL),
    )
    for what, got, want, tol in checks:
        if np.shape(got) != np.shape(want) or not np.allclose(got, want, rtol=0.0, atol=tol):
            raise DataError(
                f"{path}: {what} {tuple(np.round(got, 4).tolist())} differs from {reference_path.name} "
                f"{tuple(np.round(want, 4).tolist())}"
            )


def write_nifti(array: np.ndarray, geometry: Geometry, path: str | os.PathLike) -> Path:
    """Write ``array`` (indexed ``(X, Y, Z)``) with ``geometry``'s spacing, origin and direction, atomically.

    Arguments:
        array: the voxels, of ``geometry.size``; written in their own dtype.
        geometry: the header to write (its ``size`` must match ``array``).
        path: the file to write (``.nii.gz`` compresses).

    Returns:
        ``path``.

    Raises:
        ValueError: ``array``'s shape is not ``geometry.size``.
    """
    import SimpleITK as sitk

    array = np.asarray(array)
    if array.shape != tuple(geometry.size):
        raise ValueError(f"array shape {array.shape} differs from the geometry's size {tuple(geometry.size)}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose()))
    image.SetSpacing(geometry.spacing.tolist())
    image.SetOrigin(geometry.origin.tolist())
    image.SetDirection(geometry.direction.ravel().tolist())
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
