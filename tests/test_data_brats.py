"""The BraTS reader: discovery, 2021/2023 naming, labels, normalisation, geometry, bad input."""

import gzip
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from fuse4seg_jax.data import (
    crop_window,
    discover_cases,
    load_case,
    normalise_volume,
    split_cases,
    to_brats,
    write_like,
    write_phantom,
)
from fuse4seg_jax.errors import ConfigError, DataError


def _write(path, array_xyz, spacing=(1.0, 1.0, 1.0)):
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array_xyz).transpose(2, 1, 0)))
    image.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), True)


def _brats2023_case(root, seg_values=(0, 1, 2, 3)):
    """A 2023-named case: t1c = 1..N ramp inside a box, t2f constant 5, seg cycling seg_values."""
    case = "BraTS-GLI-00042-000"
    volume = np.zeros((6, 5, 4), dtype=np.float32)
    volume[1:5, 1:4, 1:3] = np.arange(1, 25, dtype=np.float32).reshape(4, 3, 2)
    seg = np.zeros((6, 5, 4), dtype=np.uint8)
    seg[1:5, 1:4, 1:3] = np.resize(np.asarray(seg_values, dtype=np.uint8), (4, 3, 2))
    for suffix, data in (
        ("t1c", volume),
        ("t2f", (volume > 0) * 5.0),
        ("t1n", volume),
        ("t2w", volume),
        ("seg", seg),
    ):
        _write(root / case / f"{case}-{suffix}.nii.gz", data)
    return root / case


@pytest.fixture
def phantom(tmp_path):
    write_phantom(tmp_path / "cases", 2, seed=3, shape=(32, 32, 16))
    return tmp_path / "cases"


def test_2023_naming_label_3_is_et_and_modalities_map(tmp_path):
    _brats2023_case(tmp_path)
    (case,) = discover_cases(tmp_path)
    assert case.case_id == "BraTS-GLI-00042-000" and case.naming == "2023"
    assert sorted(case.images) == ["flair", "t1", "t1ce", "t2"]
    loaded = load_case(case, ("t1ce", "flair"))
    assert loaded.images.shape == (6, 5, 4, 2) and loaded.images.dtype == np.float32
    np.testing.assert_array_equal(np.unique(loaded.label), [0, 1, 2, 3])
    raw_seg = sitk.GetArrayFromImage(sitk.ReadImage(str(case.seg))).transpose(2, 1, 0)
    np.testing.assert_array_equal(loaded.label, raw_seg)  # 2023 already uses 0..3
    np.testing.assert_array_equal(to_brats(loaded.label, "2023"), raw_seg)
    assert loaded.images[..., 1][loaded.images[..., 1] > 0].size == 0  # constant brain -> 0


def test_2021_label_4_becomes_3_and_is_written_back_as_4(phantom, tmp_path):
    case = discover_cases(phantom)[0]
    loaded = load_case(case)
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(case.seg))).transpose(2, 1, 0)
    np.testing.assert_array_equal(loaded.label, np.where(raw == 4, 3, raw))
    out = write_like(loaded.label, loaded, tmp_path / "pred.nii.gz", labels=True)
    back = sitk.ReadImage(str(out))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back).transpose(2, 1, 0), raw)
    assert back.GetSpacing() == sitk.ReadImage(str(case.seg)).GetSpacing()


def test_normalisation_clips_percentiles_and_keeps_background_zero():
    volume = np.zeros((10, 10, 10), dtype=np.float32)
    volume[:, :, 5:] = np.arange(1, 501, dtype=np.float32).reshape(10, 10, 5)
    out = normalise_volume(volume, percentiles=(0.0, 100.0))
    assert (out[:, :, :5] == 0).all()
    np.testing.assert_allclose(out[:, :, 5:], (volume[:, :, 5:] - 1) / 499, atol=1e-6)
    clipped = normalise_volume(volume, percentiles=(10.0, 90.0))
    lo, hi = np.percentile(np.arange(1, 501), (10, 90))
    np.testing.assert_allclose(
        clipped[:, :, 5:], (np.clip(volume[:, :, 5:], lo, hi) - lo) / (hi - lo), atol=1e-6
    )


def test_crop_240_to_224_only_in_plane():
    assert crop_window((240, 240, 155), 2) == (slice(8, 232), slice(8, 232), slice(None))
    assert crop_window((240, 240, 155, 2), 0) == (
        slice(None),
        slice(8, 232),
        slice(None),
        slice(None),
    )
    assert crop_window((96, 96, 64), 2) == (slice(None),) * 3


def test_split_is_patient_level_deterministic_and_complete():
    ids = [f"case{i:02d}" for i in range(20)]
    parts = split_cases(ids, seed=1)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [14, 2, 4]
    assert sorted(sum(parts.values(), [])) == ids
    assert split_cases(list(reversed(ids)), seed=1) == parts
    assert split_cases(ids, seed=2) != parts
    with pytest.raises(ConfigError, match="--fractions"):
        split_cases(ids, seed=1, fractions=(0.5, 0.5, 0.5))


# --- bad input: each error names the file -------------------------------------------------


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path}: no BraTS cases"):
        discover_cases(tmp_path)


def test_missing_modality_names_the_expected_file(phantom):
    (phantom / "BraTS2021_00001" / "BraTS2021_00001_flair.nii.gz").unlink()
    case = discover_cases(phantom)[1]
    with pytest.raises(DataError, match="missing flair .*BraTS2021_00001_flair.nii.gz"):
        load_case(case)


def test_unknown_modality(phantom):
    with pytest.raises(ConfigError, match="unknown modality 'pd'"):
        load_case(discover_cases(phantom)[0], ("t1ce", "pd"))


@pytest.mark.parametrize(
    ("what", "spacing", "shape"),
    [("size", (1, 1, 1), (32, 32, 15)), ("spacing", (1, 1, 1.5), (32, 32, 16))],
)
def test_geometry_mismatch(phantom, what, spacing, shape):
    path = phantom / "BraTS2021_00000" / "BraTS2021_00000_flair.nii.gz"
    _write(path, np.ones(shape, np.float32), spacing)
    with pytest.raises(
        DataError,
        match=f"BraTS2021_00000_flair.nii.gz: {what} .* differs from BraTS2021_00000_t1ce",
    ) as info:
        load_case(discover_cases(phantom)[0])
    got = tuple(float(v) for v in spacing) if what == "spacing" else shape
    assert f"{what} {got} differs" in str(info.value)  # plain numbers, not np.int64(32)


def test_unexpected_label_value(tmp_path):
    case = _brats2023_case(tmp_path, seg_values=(0, 1, 4))  # 4 is not a 2023 label
    with pytest.raises(DataError, match=rf"{case.name}-seg.nii.gz: unexpected label values \[4\]"):
        load_case(discover_cases(tmp_path)[0])


def test_truncated_gzip(phantom):
    path = phantom / "BraTS2021_00000" / "BraTS2021_00000_t1ce.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="BraTS2021_00000_t1ce.nii.gz: cannot read"):
        load_case(discover_cases(phantom)[0])


def test_nan_voxels(phantom):
    path = phantom / "BraTS2021_00000" / "BraTS2021_00000_flair.nii.gz"
    volume = np.ones((32, 32, 16), np.float32)
    volume[3, 4, 5] = np.nan
    _write(path, volume)
    with pytest.raises(DataError, match="BraTS2021_00000_flair.nii.gz: 1 NaN"):
        load_case(discover_cases(phantom)[0])


def test_uncompressed_nifti_is_read_too(phantom):
    folder = phantom / "BraTS2021_00000"
    for f in list(folder.iterdir()):
        with gzip.open(f) as src, open(folder / f.name.removesuffix(".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        f.unlink()
    assert load_case(discover_cases(phantom)[0]).images.shape == (32, 32, 16, 2)
