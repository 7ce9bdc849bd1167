"""Paired PNG folders: matching by name, grey and colour reading, YCbCr round trip."""

import numpy as np
import pytest
from PIL import Image

from fuse4seg_jax.data import read_paired_folder, restore_colour, rgb_to_ycbcr, ycbcr_to_rgb
from fuse4seg_jax.errors import DataError


def _folders(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (8, 6), dtype=np.uint8)
    colour = rng.integers(0, 256, (8, 6, 3), dtype=np.uint8)
    (tmp_path / "mri").mkdir()
    (tmp_path / "pet").mkdir()
    Image.fromarray(grey).save(tmp_path / "mri" / "1.png")
    Image.fromarray(colour).save(tmp_path / "pet" / "1.png")
    return grey, colour


def test_bt601_values_and_round_trip():
    np.testing.assert_allclose(rgb_to_ycbcr([1.0, 1.0, 1.0]), [1.0, 0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(rgb_to_ycbcr([1.0, 0.0, 0.0]), [0.299, 0.5 - 0.299 / 1.772, 1.0], atol=1e-6)
    rgb = np.random.default_rng(1).random((5, 4, 3))
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-6)


def test_pairs_read_grey_and_luma_and_restore_colour(tmp_path):
    grey, colour = _folders(tmp_path)
    (pair,) = read_paired_folder(tmp_path / "mri", tmp_path / "pet")
    assert pair.name == "1.png" and pair.a.dtype == np.float32
    np.testing.assert_allclose(pair.a, grey / 255.0, atol=1e-6)
    np.testing.assert_allclose(pair.b, rgb_to_ycbcr(colour / 255.0)[..., 0], atol=1e-6)
    # fusing "nothing" (the colour image's own luma) gives the colour image back
    np.testing.assert_array_equal(restore_colour(pair.b, pair), colour)


def test_unmatched_files_are_named(tmp_path):
    _folders(tmp_path)
    Image.fromarray(np.zeros((8, 6), np.uint8)).save(tmp_path / "pet" / "2.png")
    with pytest.raises(DataError, match=r"pet: no partner in the other folder for 2.png"):
        read_paired_folder(tmp_path / "mri", tmp_path / "pet")
    with pytest.raises(DataError, match="no PNG images"):
        read_paired_folder(tmp_path / "mri", tmp_path)
