"""On-disk BraTS labels <-> internal classes, and the 2-D image reader's layout."""

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from fuse4seg_jax.data import check_label_values, naming_of, read_image, to_brats, to_internal
from fuse4seg_jax.errors import DataError


@pytest.mark.parametrize(("naming", "et"), [("2021", 4), ("2023", 3)])
def test_each_naming_maps_its_et_label_to_3_and_back(naming, et):
    on_disk = np.array([[0, 1], [2, et]], np.uint8)
    internal = to_internal(on_disk, naming)
    np.testing.assert_array_equal(internal, [[0, 1], [2, 3]])
    assert internal.dtype == np.int32
    np.testing.assert_array_equal(to_brats(internal, naming), on_disk)


def test_values_outside_the_naming_are_named_with_the_file():
    with pytest.raises(DataError, match=r"x.nii.gz: unexpected label values \[3\] .*BraTS 2021; see it"):
        to_internal(np.array([0, 3, 4]), "2021", "x.nii.gz", hint="; see it")


def test_label_values_must_be_integers_in_0_to_4():
    labels, values = check_label_values(np.array([0.0, 2.0, 4.0]), "f")
    assert labels.dtype == np.int64 and values == {0, 2, 4}
    with pytest.raises(DataError, match=r"f: non-integer label values \(for example 1.5\)"):
        check_label_values(np.array([0.0, 1.5]), "f")
    with pytest.raises(DataError, match=r"f: label values must lie in 0..4, found 0..5"):
        check_label_values(np.array([0, 5]), "f")


def test_the_et_label_present_decides_the_naming():
    assert naming_of({0, 1, 4}, "f") == "2021"
    assert naming_of({0, 2, 3}, "f") == "2023"
    assert naming_of({0, 1, 2}, "f") is None
    with pytest.raises(DataError, match="f: holds both 3 and 4; pass --et-label"):
        naming_of({3, 4}, "f")


def test_a_2d_nifti_and_a_png_of_one_picture_read_alike(tmp_path):
    picture = np.random.default_rng(0).integers(0, 256, (5, 7)).astype(np.uint8)  # (H, W), not square
    Image.fromarray(picture).save(tmp_path / "a.png")
    sitk.WriteImage(sitk.GetImageFromArray(picture), str(tmp_path / "a.nii.gz"))  # x along W
    np.testing.assert_array_equal(read_image(tmp_path / "a.nii.gz"), picture)
    np.testing.assert_allclose(read_image(tmp_path / "a.png") * 255, picture, atol=1e-4)
