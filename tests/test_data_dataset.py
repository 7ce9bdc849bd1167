"""phantom -> tfds ArrayRecord -> SliceSource -> batches, and the prepare / phantom verbs."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from fuse4seg_jax.cli import main
from fuse4seg_jax.data import (
    discover_cases,
    load_case,
    open_split,
    patient_split_batch,
    prepare_dataset,
    sample_batch,
    write_phantom,
)
from fuse4seg_jax.errors import DataError

SHAPE = (32, 32, 16)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    write_phantom(root / "cases", 4, seed=11, shape=SHAPE)
    return root / "cases", prepare_dataset(root / "cases", root / "tfds")


def test_round_trip_preserves_values_case_ids_and_slices(prepared):
    manual, path = prepared
    cases = {c.case_id: c for c in discover_cases(manual)}
    for split in ("train", "val", "test"):
        src = open_split(path, split)
        assert src.modalities == ("t1ce", "flair")
        for case_id in src.case_ids:
            case = load_case(cases[case_id])
            for i in src.slices_of(case_id):
                record = src[int(i)]
                assert record["case_id"] == case_id
                np.testing.assert_array_equal(record["image"], case.images[:, :, record["slice"]])
                np.testing.assert_array_equal(record["label"], case.label[:, :, record["slice"]])
                np.testing.assert_array_equal(record["spacing"], [1, 1, 1])


def test_splits_are_patient_disjoint_train_drops_only_brainless_slices(prepared):
    manual, path = prepared
    splits = {s: open_split(path, s) for s in ("train", "val", "test")}
    ids = [set(src.case_ids) for src in splits.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set.union(*ids) == {c.case_id for c in discover_cases(manual)}
    for split in ("val", "test"):  # every slice kept, in order, so volumes restack
        src = splits[split]
        for case_id in src.case_ids:
            np.testing.assert_array_equal(src.record_slice[src.slices_of(case_id)], np.arange(SHAPE[2]))
    train = splits["train"]
    for case_id in train.case_ids:
        images = load_case(
            discover_cases(manual)[[c.case_id for c in discover_cases(manual)].index(case_id)]
        ).images
        has_brain = np.flatnonzero(images.any(axis=(0, 1, 3)))
        np.testing.assert_array_equal(train.record_slice[train.slices_of(case_id)], has_brain)


def test_tfds_builder_api_reads_the_same_records(prepared):
    _, path = prepared
    source = tfds.builder_from_directory(str(path)).as_data_source("test")
    src = open_split(path, "test")
    np.testing.assert_array_equal(source[3]["image"], src[3]["image"])


def test_sample_batch_is_a_function_of_seed_and_step_and_holds_the_records_it_names(prepared):
    src = open_split(prepared[1], "train")
    b = sample_batch(src, 4, seed=0, step=3)
    assert b["image"].shape == (4, *SHAPE[:2], 2) and b["image"].dtype == np.float32
    assert b["label"].dtype == np.int32 and b["patient"].dtype == np.int32 and b["slice"].dtype == np.int32
    again = sample_batch(src, 4, seed=0, step=3)
    for k in b:
        np.testing.assert_array_equal(b[k], again[k])
    other = sample_batch(src, 4, seed=0, step=4)
    assert not np.array_equal(
        np.stack([other["patient"], other["slice"]]), np.stack([b["patient"], b["slice"]])
    )
    for row, (patient, slice_) in enumerate(zip(b["patient"], b["slice"], strict=True)):
        (index,) = np.flatnonzero((src.record_case == patient) & (src.record_slice == slice_))
        np.testing.assert_array_equal(b["image"][row], src[int(index)]["image"])
        np.testing.assert_array_equal(b["label"][row], src[int(index)]["label"])
    with pytest.raises(DataError, match=f"cannot draw a batch of {len(src) + 1}"):
        sample_batch(src, len(src) + 1, seed=0, step=0)


def test_patient_split_batch_is_disjoint_and_deterministic(prepared):
    src = open_split(prepared[1], "train")  # 2 patients
    for step in range(3):
        tr, val = patient_split_batch(src, 4, 2, seed=5, step=step)
        assert tr["image"].shape[0] == 4 and val["image"].shape[0] == 2
        assert not set(tr["patient"].tolist()) & set(val["patient"].tolist())
    again = patient_split_batch(src, 4, 2, seed=5, step=2)
    np.testing.assert_array_equal(again[0]["slice"], tr["slice"])
    with pytest.raises(DataError, match="needs >= 2 patients"):
        patient_split_batch(open_split(prepared[1], "val"), 2, 2, seed=0, step=0)


def test_distinct_inner_batches_are_k_draws_interleaved_sample_major(prepared):
    src = open_split(prepared[1], "train")
    tr, val = patient_split_batch(src, 4, 2, seed=5, step=1, inner=3)
    assert tr["image"].shape[0] == 12 and val["image"].shape[0] == 2
    assert not set(tr["patient"].tolist()) & set(val["patient"].tolist())
    draws = tr["slice"].reshape(4, 3).T  # row b K + k is sample b of draw k
    assert len({tuple(d) for d in draws}) > 1, "the K draws should differ"
    assert all(np.all(np.diff(d) >= 0) for d in draws), "each draw is sorted as a single batch is"
    # One draw is the pair as it always was: the default keeps old runs' batches.
    np.testing.assert_array_equal(
        patient_split_batch(src, 4, 2, seed=5, step=1, inner=1)[0]["slice"],
        patient_split_batch(src, 4, 2, seed=5, step=1)[0]["slice"],
    )


def test_prepare_verb_errors_exit_2_name_the_file_and_leave_nothing(prepared, tmp_path, capsys):
    manual, _ = prepared
    out = tmp_path / "out"
    assert main(["prepare", "--manual-dir", str(tmp_path / "empty"), "--data-dir", str(out)]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert (
        main(
            [
                "prepare",
                "--manual-dir",
                str(manual),
                "--data-dir",
                str(out),
                "--modalities",
                "t1ce",
                "pd",
            ]
        )
        == 2
    )
    assert "unknown modality 'pd'" in capsys.readouterr().err
    broken = tmp_path / "broken"
    write_phantom(broken, 3, seed=0, shape=SHAPE)
    seg = broken / "BraTS2021_00002" / "BraTS2021_00002_seg.nii.gz"
    seg.write_bytes(seg.read_bytes()[:100])  # found only while writing (up front only presence is checked)
    code = main(["prepare", "--manual-dir", str(broken), "--data-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "BraTS2021_00002_seg.nii.gz: cannot read" in err and "Traceback" not in err
    assert not out.exists()


def test_prepare_refuses_existing_dataset_without_overwrite(prepared):
    manual, path = prepared
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        prepare_dataset(manual, path.parents[2])


def test_phantom_verb_writes_cases(tmp_path, capsys):
    assert main(["phantom", "--out", str(tmp_path / "p"), "--cases", "2", "--shape", "16", "16", "8"]) == 0
    assert [c.case_id for c in discover_cases(tmp_path / "p")] == [
        "BraTS2021_00000",
        "BraTS2021_00001",
    ]
    assert main(["phantom", "--out", str(tmp_path / "p"), "--cases", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
