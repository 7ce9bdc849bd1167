"""``fuse4seg sweep``: configs over seeds, one table of mean ± std over seeds, resumable."""

import json
import math

import pytest

from fuse4seg_jax.cli import main
from fuse4seg_jax.train.sweep import COLUMNS, run_name, seed_statistics, write_tables


def _summary(dice: float) -> dict:
    return {column: {"mean": dice, "std": 0.0, "n": 4} for column in COLUMNS}


def test_the_table_holds_mean_and_std_over_seeds(tmp_path):
    summaries = {"full_demo": [_summary(0.5), _summary(0.7)], "average": [_summary(0.4)]}
    summaries["average"][0]["Dice ET"]["mean"] = None  # a run where ET was never defined
    stats = seed_statistics(summaries)
    assert stats["full_demo"]["Dice NCR"] == pytest.approx((0.6, 0.1, 2))
    assert stats["average"]["Dice ED"] == pytest.approx((0.4, 0.0, 1))
    assert stats["average"]["Dice ET"][2] == 0 and math.isnan(stats["average"]["Dice ET"][0])
    markdown = write_tables(tmp_path, stats)
    assert "| full_demo | 2 | 0.6000 ± 0.1000 |" in markdown
    assert (tmp_path / "table.md").read_text() == markdown
    assert (tmp_path / "table.png").stat().st_size > 0
    assert (tmp_path / "table.csv").read_text().splitlines()[1].startswith("full_demo,2,0.600000,0.100000")
    assert run_name("configs/table3_full.py:demo") == "table3_full_demo"


def test_a_bad_config_fails_before_any_run(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--configs", "configs/smoke.py", "configs/none.py", "--seeds", "0", "--out", str(out)]
    assert main(argv) == 2
    assert "none.py" in capsys.readouterr().err and not out.exists()


def test_a_paired_image_config_is_refused_naming_the_data_kind(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--configs", "configs/smoke.py", "configs/harvard_mri_ct.py:smoke", "--out", str(out)]
    assert main(argv) == 2
    assert "data.kind = 'paired'" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_a_sweep_trains_each_config_and_seed_once(tiny_overrides, tmp_path, standard_promotion):
    out = tmp_path / "sweep"
    argv = ["sweep", "--configs", "configs/smoke.py", "--seeds", "0,1", "--out", str(out), "--no-progress"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUSE4SEG_COMPILATION_CACHE", "off")
        assert main([*argv, *tiny_overrides]) == 0
        runs = [out / "smoke" / f"seed{s}" for s in (0, 1)]
        first = [json.loads((r / "scores.json").read_text())["summary"]["Dice mean"]["mean"] for r in runs]
        stamps = [(r / "metrics.jsonl").stat().st_mtime_ns for r in runs]
        assert main([*argv, *tiny_overrides]) == 0  # finished runs are kept, not retrained
    assert [(r / "metrics.jsonl").stat().st_mtime_ns for r in runs] == stamps
    mean = sum(first) / 2
    std = math.sqrt(sum((v - mean) ** 2 for v in first) / 2)
    header, row = (line.split(",") for line in (out / "table.csv").read_text().splitlines())
    assert row[:2] == ["smoke", "2"]
    got = dict(zip(header, row, strict=True))
    assert float(got["Dice mean mean"]) == pytest.approx(mean, abs=1e-6)
    assert float(got["Dice mean std"]) == pytest.approx(std, abs=1e-6)
