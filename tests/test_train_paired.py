"""Training the fusion leader on paired folders: bad input is refused early, a tiny run reports."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from fuse4seg_jax.cli import main
from fuse4seg_jax.data import write_synthetic_pairs
from fuse4seg_jax.errors import ConfigError, DataError
from fuse4seg_jax.metrics import fusion_scores
from fuse4seg_jax.train.config import load_config
from fuse4seg_jax.train.paired import open_pairs
from fuse4seg_jax.train.paired_report import comparison_table

SMOKE = "configs/harvard_mri_pet.py:smoke"


def _train(workdir, paired_dir, *overrides):
    return main(
        [
            "train",
            "--config",
            SMOKE,
            "--workdir",
            str(workdir),
            "--no-progress",
            f"--config.data.paired_dir={paired_dir}",
            *overrides,
        ]
    )


def _bad_folders(tmp_path):
    """Folders of pairs, each broken in one way, and the file or key its error must name."""
    good = tmp_path / "good"
    write_synthetic_pairs(good, "mri-pet", 3, size=16)
    unpaired, sizes, mixed = (tmp_path / name for name in ("unpaired", "sizes", "mixed"))
    for broken in (unpaired, sizes, mixed):
        write_synthetic_pairs(broken, "mri-pet", 3, size=16)
    (unpaired / "PET" / "0001.png").rename(unpaired / "PET" / "0009.png")
    Image.fromarray(np.zeros((20, 16), np.uint8)).save(sizes / "PET" / "0002.png")
    for folder in ("MRI", "PET"):
        Image.fromarray(np.zeros((24, 24), np.uint8)).save(mixed / folder / "0002.png")
    return {
        tmp_path / "absent": f"{tmp_path / 'absent'}: no such folder",
        unpaired: f"{unpaired / 'MRI'}: no partner in the other folder for 0001.png",
        sizes: f"{sizes / 'PET' / '0002.png'}: size (20, 16) differs",
        mixed: f"{mixed / 'MRI' / '0002.png'}: size (24, 24) differs from 0000.png's (16, 16)",
    }


def test_bad_pairs_are_data_errors_naming_the_file(tmp_path):
    for folder, message in _bad_folders(tmp_path).items():
        config = load_config(SMOKE, [f"--config.data.paired_dir={folder}", "--config.data.synthetic_pairs=0"])
        with pytest.raises(DataError, match=re.escape(message)):
            open_pairs(config)


def test_train_on_bad_pairs_exits_2_before_anything_is_written(tmp_path, capsys):
    folder, message = next((f, m) for f, m in _bad_folders(tmp_path).items() if f.name == "unpaired")
    assert _train(tmp_path / "run", folder) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "--config.stages.follower=3",
            "config key stages.follower = 3; expected 0 with data.kind = 'paired'",
        ),
        ("--config.eval_input=average", "config key eval_input = 'average'; expected 'fused'"),
        ("--config.data.modalities=('MRI', 'XRAY')", "expected the folders of a synthetic kind"),
        ("--config.data.kind=nifti", "config key data.kind = 'nifti'; expected one of brats, paired"),
    ],
)
def test_paired_configs_are_checked_naming_the_key(tmp_path, capsys, override, message):
    assert _train(tmp_path / "run", tmp_path / "pairs", override) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "pairs").exists()


def test_a_split_without_pairs_cannot_be_the_held_out_split(tmp_path):
    config = load_config(SMOKE, [f"--config.data.paired_dir={tmp_path / 'p'}", "--config.eval.split=val"])
    with pytest.raises(ConfigError, match=r"eval.split = 'val': that split holds no pairs"):
        open_pairs(config)


def test_the_table_has_a_line_per_method_and_says_where_the_leader_is_higher():
    def stats(mean):
        return {"mean": mean, "std": 0.5, "n": 2}

    summary = {
        "leader": {"EN": stats(7.0), "PSNR": stats(15.0)},
        "average": {"EN": stats(6.0), "PSNR": stats(20.0)},
    }
    lines = comparison_table(summary).splitlines()
    assert lines[0] == "| method | EN | PSNR |"
    assert lines[2:] == [
        "| trained leader | 7.0000 ± 0.5000 | 15.0000 ± 0.5000 |",
        "| average rule | 6.0000 ± 0.5000 | 20.0000 ± 0.5000 |",
        "| leader higher | yes | no |",
    ]


@pytest.mark.slow
@pytest.mark.usefixtures("standard_promotion")
def test_a_tiny_paired_run_scores_leader_and_average_rule_and_fuses_with_colour(tmp_path):
    paired_dir, workdir = tmp_path / "pairs", tmp_path / "run"
    assert _train(workdir, paired_dir) == 0
    assert (paired_dir / "MRI").is_dir() and (paired_dir / "PET").is_dir()  # generated: absent before
    report = (workdir / "report.md").read_text()
    assert "| trained leader |" in report and "| average rule |" in report and "| leader higher |" in report
    assert (workdir / "gallery.png").is_file()
    leader = json.loads((workdir / "scores.json").read_text())
    average = json.loads((workdir / "average_rule" / "scores.json").read_text())
    held_out = open_pairs(load_config(SMOKE, [f"--config.data.paired_dir={paired_dir}"]))["test"]
    assert [row["case"] for row in leader["cases"]] == list(held_out.case_ids[:2])  # eval.max_cases = 2
    assert [row["case"] for row in average["cases"]] == list(held_out.case_ids[:2])
    # the average rule's row holds the scores of the mean of the pair's two lumas
    pair = held_out.pairs[0]
    expected = fusion_scores((pair.a + pair.b) / 2, np.stack([pair.a, pair.b]))
    assert average["cases"][0] == pytest.approx({"case": pair.name, "status": "ok", **expected})
    # the run fuses new pairs in colour (the PET's chroma restored)
    sources = [str(paired_dir / "MRI"), str(paired_dir / "PET")]
    assert main(["fuse", "--run", str(workdir), "--pairs", *sources, "--out", str(tmp_path / "fused")]) == 0
    fused = np.asarray(Image.open(tmp_path / "fused" / pair.name))
    assert fused.shape == (48, 48, 3) and not np.array_equal(fused[..., 0], fused[..., 2])
