"""Synthetic Harvard-style pairs: the layout the paired reader reads, determinism, errors."""

import numpy as np
import pytest

from fuse4seg_jax.cli import main
from fuse4seg_jax.data import read_paired_folder, write_synthetic_pairs
from fuse4seg_jax.data.pair_source import open_pair_splits
from fuse4seg_jax.data.synthetic_pairs import kind_of
from fuse4seg_jax.errors import ConfigError, DataError


@pytest.mark.parametrize(("kind", "colour"), [("mri-ct", False), ("mri-pet", True), ("mri-spect", True)])
def test_pairs_are_folders_the_paired_reader_reads(tmp_path, kind, colour):
    mri_dir, other_dir = write_synthetic_pairs(tmp_path / kind, kind, count=3, seed=1, size=32)
    assert (mri_dir.name, other_dir.name) == tuple(kind.upper().split("-"))
    assert kind_of((mri_dir.name, other_dir.name)) == kind
    pairs = read_paired_folder(mri_dir, other_dir)
    assert [p.name for p in pairs] == ["0000.png", "0001.png", "0002.png"]
    for pair in pairs:
        assert pair.a.shape == pair.b.shape == (32, 32)
        assert (pair.chroma is not None) == colour  # CT is grey, PET and SPECT are colour
        # one anatomy: both images are black outside the same head
        assert np.mean((pair.a > 0) == (pair.b > 0)) > 0.9
        assert pair.a.max() > 0.5 and pair.b.max() > 0.25


def test_a_pair_depends_on_seed_and_index_only(tmp_path):
    small = read_paired_folder(*write_synthetic_pairs(tmp_path / "a", "mri-pet", 2, seed=3, size=24))
    large = read_paired_folder(*write_synthetic_pairs(tmp_path / "b", "mri-pet", 3, seed=3, size=24))
    other = read_paired_folder(*write_synthetic_pairs(tmp_path / "c", "mri-pet", 2, seed=4, size=24))
    for s, g, o in zip(small, large, other, strict=False):
        np.testing.assert_array_equal(s.a, g.a)
        np.testing.assert_array_equal(s.chroma, g.chroma)
        assert not np.array_equal(s.a, o.a)


def test_pairs_split_by_name_into_sources_of_stacked_images(tmp_path):
    write_synthetic_pairs(tmp_path / "p", "mri-spect", 5, size=16)
    splits = open_pair_splits(tmp_path / "p", ("MRI", "SPECT"), split_seed=0, fractions=(0.6, 0.0, 0.4))
    assert sorted(splits) == ["test", "train"]
    assert sorted(splits["train"].case_ids + splits["test"].case_ids) == [f"{i:04d}.png" for i in range(5)]
    (record,) = splits["test"].getitems([1])
    pair = splits["test"].pairs[1]
    np.testing.assert_array_equal(record["image"], np.stack([pair.a, pair.b], axis=-1))
    assert record["label"].shape == (16, 16) and not record["label"].any()


def test_bad_arguments_and_an_existing_folder_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--kind 'mri-xray'"):
        write_synthetic_pairs(tmp_path / "x", "mri-xray", 2)
    with pytest.raises(ConfigError, match="--size must be >= 16"):
        write_synthetic_pairs(tmp_path / "x", "mri-ct", 2, size=8)
    assert not (tmp_path / "x").exists()
    write_synthetic_pairs(tmp_path / "x", "mri-ct", 1, size=16)
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        write_synthetic_pairs(tmp_path / "x", "mri-ct", 1, size=16)


def test_the_pairs_verb_writes_the_folders_and_exits_2_on_bad_input(tmp_path, capsys):
    out = tmp_path / "pairs"
    assert main(["pairs", "--out", str(out), "--kind", "mri-spect", "--count", "2", "--size", "16"]) == 0
    assert sorted(p.name for p in (out / "SPECT").iterdir()) == ["0000.png", "0001.png"]
    assert main(["pairs", "--out", str(out), "--kind", "mri-spect", "--count", "2"]) == 2
    assert f"{out} already exists" in capsys.readouterr().err
    assert main(["pairs", "--out", str(tmp_path / "none"), "--kind", "mri-ct", "--count", "0"]) == 2
    assert "--count must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
