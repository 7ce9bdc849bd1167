"""scores.csv / scores.json: one writer, one NaN policy, strict JSON."""

import csv
import json
import math

import pytest

from fuse4seg_jax.metrics import write_scores


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def test_nan_and_inf_are_empty_cells_and_null_and_the_summary_is_over_finite_values(tmp_path):
    rows = [
        {"case": "a", "status": "ok", "Dice ET": 0.5, "PSNR": math.inf},
        {"case": "b", "status": "ok", "Dice ET": math.nan, "PSNR": 30.0},
        {"case": "c", "status": "ok", "Dice ET": 0.25, "PSNR": 20.0},
        {"case": "d", "status": "missing"},
    ]
    write_scores(tmp_path, rows, missing=["d"])
    with open(tmp_path / "scores.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["case"], r["Dice ET"], r["PSNR"]) for r in table] == [
        ("a", "0.5", ""),
        ("b", "", "30.0"),
        ("c", "0.25", "20.0"),
        ("d", "", ""),
    ]
    report = json.loads((tmp_path / "scores.json").read_text(), parse_constant=_reject_constant)
    assert [r.get("Dice ET") for r in report["cases"]] == [0.5, None, 0.25, None]
    assert report["cases"][0]["PSNR"] is None and report["missing"] == ["d"]
    assert report["summary"]["Dice ET"] == pytest.approx({"mean": 0.375, "std": 0.125, "n": 2})
    assert report["summary"]["PSNR"] == pytest.approx({"mean": 25.0, "std": 5.0, "n": 2})


def test_a_column_without_finite_values_has_null_mean_and_std(tmp_path):
    write_scores(tmp_path, [{"case": "a", "status": "ok", "HD95 (mm) ET": math.nan}])
    summary = json.loads((tmp_path / "scores.json").read_text(), parse_constant=_reject_constant)["summary"]
    assert summary["HD95 (mm) ET"] == {"mean": None, "std": None, "n": 0}
