"""The phantom: BraTS-2021 files, labels nested, contrasts as in real scans, deterministic."""

import numpy as np
import pytest
import SimpleITK as sitk

from fuse4seg_jax.data import discover_cases, load_case, write_phantom
from fuse4seg_jax.errors import ConfigError, DataError

SHAPE = (32, 32, 16)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return write_phantom(tmp_path_factory.mktemp("ph") / "cases", 3, seed=7, shape=SHAPE)


def test_files_open_in_simpleitk_with_brats_shape_spacing_and_labels(cases):
    for folder in cases:
        for suffix in ("t1", "t1ce", "t2", "flair", "seg"):
            image = sitk.ReadImage(str(folder / f"{folder.name}_{suffix}.nii.gz"))
            assert image.GetSize() == SHAPE
            assert image.GetSpacing() == (1.0, 1.0, 1.0)
        seg = sitk.GetArrayFromImage(image)
        assert set(np.unique(seg)) == {0, 1, 2, 4}


def test_background_is_exactly_zero_and_tumour_inside_brain(cases):
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(cases[0] / f"{cases[0].name}_flair.nii.gz")))
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(cases[0] / f"{cases[0].name}_seg.nii.gz")))
    assert (raw[[0, -1]] == 0).all()  # first and last axial planes lie outside the ellipsoid
    assert (raw[seg > 0] > 0).all()


def _region_means(case):
    """mean normalised intensity per modality in NCR, ED, ET and healthy brain (label 0, brain)."""
    loaded = load_case(case, ("t1ce", "flair"))
    brain = loaded.images.max(axis=-1) > 0
    regions = {
        "ncr": loaded.label == 1,
        "ed": loaded.label == 2,
        "et": loaded.label == 3,
        "healthy": brain & (loaded.label == 0),
    }
    return {
        m: {r: loaded.images[..., i][mask] for r, mask in regions.items()}
        for i, m in enumerate(loaded.modalities)
    }


def test_contrasts_need_both_modalities(cases):
    for case in discover_cases(cases[0].parent):
        v = _region_means(case)
        t1ce, flair = v["t1ce"], v["flair"]
        assert flair["ed"].mean() > flair["healthy"].mean() + 0.2
        assert t1ce["et"].mean() > t1ce["ncr"].mean() + 0.1
        # ED barely shows on T1ce, in units of the healthy tissue's spread, compared to FLAIR
        t1ce_ed = abs(t1ce["ed"].mean() - t1ce["healthy"].mean()) / t1ce["healthy"].std()
        flair_ed = (flair["ed"].mean() - flair["healthy"].mean()) / flair["healthy"].std()
        assert t1ce_ed < 0.4 * flair_ed
        # FLAIR hardly separates the tumour's inner labels, which T1ce does
        assert abs(flair["et"].mean() - flair["ncr"].mean()) < 0.5 * (t1ce["et"].mean() - t1ce["ncr"].mean())


def test_same_seed_same_bytes_other_seed_differs(cases, tmp_path):
    again = write_phantom(tmp_path / "a", 1, seed=7, shape=SHAPE)
    other = write_phantom(tmp_path / "b", 1, seed=8, shape=SHAPE)
    name = "BraTS2021_00000_t1ce.nii.gz"
    read = lambda folder: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / name)))  # noqa: E731
    np.testing.assert_array_equal(read(cases[0]), read(again[0]))
    assert not np.array_equal(read(cases[0]), read(other[0]))


def test_existing_folder_needs_overwrite_and_bad_shape_is_config_error(cases, tmp_path):
    with pytest.raises(DataError, match="already exists"):
        write_phantom(cases[0].parent, 1, seed=0, shape=SHAPE)
    with pytest.raises(ConfigError, match="--shape"):
        write_phantom(tmp_path / "x", 1, seed=0, shape=(32, 32))
    assert not (tmp_path / "x").exists()
