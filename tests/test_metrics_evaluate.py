"""``fuse4seg evaluate``: scores on disk match the library, bad input exits 2 naming the file."""

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from fuse4seg_jax.cli import main
from fuse4seg_jax.data import read_image
from fuse4seg_jax.metrics import fusion_scores, segmentation_row, segmentation_scores, to_grey_levels

SHAPE_ZYX = (6, 10, 12)
SPACING_XYZ = (1.0, 1.0, 2.0)


def _labels(seed):
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE_ZYX, np.int32)
    labels[1:5, 2:8, 3:10] = rng.integers(0, 4, (4, 6, 7))
    return labels


def _write(path, array):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING_XYZ)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def _on_disk(labels, et):
    return np.where(labels == 3, et, labels).astype(np.uint8)


def _dataset(tmp_path, et=4, cases=("BraTS2021_00000", "BraTS2021_00001")):
    """BraTS-style truth folders and flat prediction files; returns internal label arrays."""
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    arrays = {}
    for i, case in enumerate(cases):
        truth, pred = _labels(i), _labels(i + 10)
        _write(truth_dir / case / f"{case}_seg.nii.gz", _on_disk(truth, et))
        _write(truth_dir / case / f"{case}_flair.nii.gz", truth.astype(np.float32))
        _write(pred_dir / f"{case}.nii.gz", _on_disk(pred, et))
        arrays[case] = (pred, truth)
    return truth_dir, pred_dir, arrays


def _read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("et", [4, 3])
def test_scores_on_disk_equal_the_library_for_both_et_labels(tmp_path, et):
    truth_dir, pred_dir, arrays = _dataset(tmp_path, et=et)
    out = tmp_path / "out"
    assert main(["evaluate", "--pred", str(pred_dir), "--truth", str(truth_dir), "--out", str(out)]) == 0
    rows = _read_csv(out / "scores.csv")
    assert [r["case"] for r in rows] == list(arrays)
    for row, (pred, truth) in zip(rows, arrays.values(), strict=True):
        # Arrays are (z, y, x) from SimpleITK, so the spacing is reversed.
        expected = segmentation_row(segmentation_scores(pred, truth, SPACING_XYZ[::-1]))
        assert {k: float(row[k]) for k in expected} == pytest.approx(expected, rel=1e-12)
    report = json.loads((out / "scores.json").read_text())
    assert report["missing"] == [] and len(report["cases"]) == 2
    assert "| mean ± std | 2 |" in (out / "summary.md").read_text()


def test_missing_prediction_fails_by_name_or_is_listed(tmp_path, capsys):
    truth_dir, pred_dir, _ = _dataset(tmp_path)
    (pred_dir / "BraTS2021_00001.nii.gz").unlink()
    out = tmp_path / "out"
    args = ["evaluate", "--pred", str(pred_dir), "--truth", str(truth_dir), "--out", str(out)]
    assert main(args) == 2
    assert "BraTS2021_00001" in capsys.readouterr().err
    assert not out.exists()
    assert main([*args, "--allow-missing"]) == 0
    rows = _read_csv(out / "scores.csv")
    assert [(r["case"], r["status"]) for r in rows] == [
        ("BraTS2021_00000", "ok"),
        ("BraTS2021_00001", "missing"),
    ]
    assert rows[1]["Dice ET"] == ""
    summary = (out / "summary.md").read_text()
    assert "| mean ± std | 1 |" in summary
    assert "Not scored (1 of 2): BraTS2021_00001 (missing)" in summary
    assert json.loads((out / "scores.json").read_text())["missing"] == ["BraTS2021_00001"]


def test_shape_mismatch_names_the_file(tmp_path, capsys):
    truth_dir, pred_dir, _ = _dataset(tmp_path, cases=("a",))
    _write(pred_dir / "a.nii.gz", np.zeros((6, 10, 11), np.uint8))
    assert main(["evaluate", "--pred", str(pred_dir), "--truth", str(truth_dir)]) == 2
    err = capsys.readouterr().err
    assert "a.nii.gz: shape (11, 10, 6) differs from ground truth" in err
    assert "Traceback" not in err


def test_non_integer_labels_name_the_file(tmp_path, capsys):
    truth_dir, pred_dir, _ = _dataset(tmp_path, cases=("a",))
    _write(pred_dir / "a.nii.gz", np.full(SHAPE_ZYX, 0.5, np.float32))
    assert main(["evaluate", "--pred", str(pred_dir), "--truth", str(truth_dir)]) == 2
    assert "a.nii.gz: non-integer label values (for example 0.5)" in capsys.readouterr().err


def test_wrong_et_convention_is_reported(tmp_path, capsys):
    truth_dir, pred_dir, arrays = _dataset(tmp_path, et=4, cases=("a",))
    _write(pred_dir / "a.nii.gz", _on_disk(arrays["a"][0], 3))  # 2023 labels against 2021 truth
    assert main(["evaluate", "--pred", str(pred_dir), "--truth", str(truth_dir)]) == 2
    assert "a.nii.gz: unexpected label values [3]" in capsys.readouterr().err


def test_fused_pngs_are_scored_against_their_sources(tmp_path):
    rng = np.random.default_rng(0)
    images = {}
    for folder in ("fused", "t1ce", "flair"):
        images[folder] = rng.integers(0, 256, (48, 48)).astype(np.uint8)
        (tmp_path / folder).mkdir()
        Image.fromarray(images[folder]).save(tmp_path / folder / "case_070.png")
    out = tmp_path / "out"
    code = main(
        [
            "evaluate",
            "--fused",
            str(tmp_path / "fused"),
            "--sources",
            str(tmp_path / "t1ce"),
            str(tmp_path / "flair"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    (row,) = _read_csv(out / "scores.csv")
    expected = fusion_scores(images["fused"], np.stack([images["t1ce"], images["flair"]]))
    assert {k: float(row[k]) for k in expected} == pytest.approx(expected, rel=1e-12)


def test_modes_cannot_be_mixed(tmp_path, capsys):
    assert main(["evaluate", "--pred", str(tmp_path), "--fused", str(tmp_path)]) == 2
    assert "either --pred and --truth, or --fused and --sources" in capsys.readouterr().err


# (R, G, B) -> the grey level the CDDFuse evaluator gets: OpenCV 4.5.5 (and 5.0) float32
# cvtColor(BGR2GRAY), then np.round, measured on an x86-64 CPU with FMA.
_KNOWN_GREY = {
    # Ties: 0.299 R + 0.587 G + 0.114 B is exactly k + 1/2. Chosen among those where rounding the
    # luma in float64, in float32 without fused multiply-add (either order), or as our default
    # reader does, goes the other way.
    (74, 226, 208): 179,
    (230, 246, 152): 231,
    (192, 214, 241): 211,
    (169, 195, 136): 181,
    (22, 20, 63): 25,
    (145, 91, 252): 125,
    (27, 55, 203): 63,
    (162, 106, 60): 117,
    # Corners: round(255 x the sum of the coefficients of the channels at 255).
    (0, 0, 0): 0,
    (255, 0, 0): 76,
    (0, 255, 0): 150,
    (0, 0, 255): 29,
    (255, 255, 0): 226,
    (255, 0, 255): 105,
    (0, 255, 255): 179,
    (255, 255, 255): 255,
}
_N_TIES = 8


def _colours_and_grey(n_random, seed=0):
    """``(n, 3)`` uint8 colours (:data:`_KNOWN_GREY`, then random non-ties) and their evaluator grey."""
    rng = np.random.default_rng(seed)
    random = rng.integers(0, 256, (4 * n_random, 3))
    luma_x1000 = random @ np.array([299, 587, 114])
    not_tie = luma_x1000 % 1000 != 500  # elsewhere the evaluator gets the exactly rounded luma
    random, luma_x1000 = random[not_tie][:n_random], luma_x1000[not_tie][:n_random]
    colours = np.concatenate([list(_KNOWN_GREY), random]).astype(np.uint8)
    grey = np.concatenate([list(_KNOWN_GREY.values()), (luma_x1000 + 500) // 1000])
    return colours, grey.astype(np.uint8)


def test_compat_reads_colour_and_16_bit_pngs_as_the_cddfuse_evaluator(tmp_path):
    colours, grey = _colours_and_grey(500)
    Image.fromarray(colours[None]).save(tmp_path / "colour.png")
    read = read_image(tmp_path / "colour.png", grey="cddfuse")
    np.testing.assert_array_equal(to_grey_levels(read[0]), grey)
    levels = np.array([[0, 255, 256, 32767, 32768, 33023, 65279, 65535]], np.uint16)
    Image.fromarray(levels).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(
        to_grey_levels(read_image(tmp_path / "deep.png", grey="cddfuse")), levels >> 8
    )
    as_luma = to_grey_levels(read_image(tmp_path / "deep.png"))
    np.testing.assert_array_equal(as_luma, np.round(levels / 257.0))


def test_cddfuse_compat_scores_with_the_evaluators_grey_levels(tmp_path):
    colours, grey = _colours_and_grey(48 * 48 - len(_KNOWN_GREY), seed=1)
    rng = np.random.default_rng(2)
    fused = rng.integers(0, 256, (48, 48)).astype(np.uint8)
    flair = rng.integers(0, 256, (48, 48)).astype(np.uint8)
    for folder, image in (("fused", fused), ("t1ce", colours.reshape(48, 48, 3)), ("flair", flair)):
        (tmp_path / folder).mkdir()
        Image.fromarray(image).save(tmp_path / folder / "case.png")
    args = ["evaluate", "--fused", str(tmp_path / "fused"), "--sources", str(tmp_path / "t1ce")]
    args += [str(tmp_path / "flair"), "--cddfuse-compat", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    (row,) = _read_csv(tmp_path / "out" / "scores.csv")
    expected = fusion_scores(fused, np.stack([grey.reshape(48, 48), flair]), cddfuse_compat=True)
    assert {k: float(row[k]) for k in expected} == pytest.approx(expected, rel=1e-12)
    # The default mode reads the colour source as float luma, which rounds these ties the other way.
    luma = to_grey_levels(read_image(tmp_path / "t1ce" / "case.png")).reshape(-1)
    np.testing.assert_array_equal(luma != grey, np.arange(grey.size) < _N_TIES)
