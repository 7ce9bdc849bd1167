"""``fuse4seg compare-solvers`` end to end on the tiny config, and its answers to bad input."""

import csv

import pytest

from fuse4seg_jax.cli import main

TINY_CONFIG = "configs/smoke.py"

pytestmark = pytest.mark.usefixtures("standard_promotion")


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--solvers", "first_order,implicit_cgg"], "unknown solver 'implicit_cgg'"),
        (
            ["--solvers", "implicit_cg:max_iter=0"],
            "'implicit_cg:max_iter=0': solver option max_iter must be positive",
        ),
        (["--solvers", "first_order", "--reference", "converged:grad_tl=1"], "unknown option(s) grad_tl"),
        (["--solvers", "first_order", "--run", "no/such/run"], "--run no/such/run is not a run directory"),
    ],
)
def test_bad_input_exits_2_naming_it_before_any_work(arguments, named, tmp_path, capsys):
    code = main(["compare-solvers", "--config", TINY_CONFIG, "--out", str(tmp_path / "out"), *arguments])
    assert code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_compare_solvers_writes_a_table_a_csv_and_a_plot_with_the_ift_verdict(
    tiny_overrides, tmp_path, capsys
):
    out = tmp_path / "study"
    code = main(
        [
            "compare-solvers",
            "--config",
            TINY_CONFIG,
            "--solvers",
            "implicit_cg:max_iter=2,solve_loop=while",
            "--reference",
            "unrolled",
            "--rounds",
            "1",
            "--lanczos",
            "3",
            "--out",
            str(out),
            *tiny_overrides,
        ]
    )
    assert code == 0
    rows = list(csv.DictReader((out / "compare_solvers.csv").open()))
    assert [r["solver"] for r in rows] == ["first_order", "implicit_cg:max_iter=2,solve_loop=while"]
    assert float(rows[0]["time_ratio"]) == 1.0 and -1 <= float(rows[1]["cosine"]) <= 1
    table = (out / "compare_solvers.md").read_text()
    assert "Reference: `unrolled`" in table and "IFT's assumptions" in table
    assert (out / "compare_solvers.png").stat().st_size > 0
    assert "| `first_order` | " in capsys.readouterr().out
