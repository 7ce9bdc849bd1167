"""Slicing and restacking: the one round trip prepare, training evaluation and inference share."""

import numpy as np
import pytest

from fuse4seg_jax.data import restack, to_slices
from fuse4seg_jax.errors import DataError


def test_restack_inverts_axial_slicing_and_centre_crop():
    volume = np.random.default_rng(0).integers(0, 4, (240, 240, 5)).astype(np.int32)
    volume[:8] = volume[232:] = 0
    volume[:, :8] = volume[:, 232:] = 0
    slices = np.moveaxis(volume, 2, 0)[:, 8:232, 8:232]  # (Z, 224, 224)
    np.testing.assert_array_equal(to_slices(volume), slices)
    np.testing.assert_array_equal(restack(slices, volume.shape, 2), volume)
    assert restack(slices, (224, 224, 5), 2).shape == (224, 224, 5)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_restack_puts_channels_and_listed_slices_back_along_any_axis(axis):
    volume = np.random.default_rng(axis).random((6, 5, 4, 2)).astype(np.float32)
    slices = to_slices(volume, axis)
    assert slices.shape == (volume.shape[axis], *np.delete(volume.shape[:3], axis), 2)
    np.testing.assert_array_equal(restack(slices, volume.shape, axis), volume)
    kept = [0, 2]
    partial = restack(slices[kept], volume.shape, axis, indices=kept)
    np.testing.assert_array_equal(np.take(partial, kept, axis), np.take(volume, kept, axis))
    assert not np.delete(partial, kept, axis).any()  # slices not listed are background


def test_restack_refuses_slices_that_do_not_fit():
    with pytest.raises(DataError, match=r"slices of shape \(3, 4, 4\) do not fit a volume of \(5, 5, 3\)"):
        restack(np.zeros((3, 4, 4), np.int32), (5, 5, 3))
