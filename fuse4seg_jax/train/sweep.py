"""Rerun configs over seeds and put their test scores in one table (mean ± std over seeds).

A sweep folder holds one run directory per config and seed, ``<out>/<name>/seed<k>/`` (``name``:
the config file's stem, with ``_<arg>`` for ``file.py:arg``), and the sweep's ``table.md``,
``table.csv`` and ``table.png``. A run whose ``scores.json`` exists is finished and kept; one
that was interrupted is resumed from its last checkpoint; so rerunning a sweep completes it.

The table's numbers are, per config, the mean and population std over seeds of each run's mean
over test cases: per region Dice (NCR, ED, ET and their mean, the papers' "Average") and the
mean IoU, the columns of Fuse4Seg's Table 3.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fuse4seg_jax.atomic import atomic_file  # noqa: E402
from fuse4seg_jax.metrics.summary import MEAN_REGIONS  # noqa: E402
from fuse4seg_jax.train.checks import require_segmentation_data  # noqa: E402
from fuse4seg_jax.train.config import load_config  # noqa: E402
from fuse4seg_jax.train.loop import run_training  # noqa: E402

COLUMNS = (*(f"Dice {r}" for r in (*MEAN_REGIONS, "mean")), "IoU mean")


def run_name(config_arg: str) -> str:
    """``"configs/table3_full.py:demo" -> "table3_full_demo"``."""
    path, _, arg = config_arg.partition(":")
    return Path(path).stem + (f"_{arg}" if arg else "")


def run_sweep(
    config_args: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    overrides: Sequence[str] = (),
    *,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> dict[str, list[dict]]:
    """Train and evaluate every config with every seed (finished runs are kept).

    Arguments:
        config_args: config files, each ``file.py`` or ``file.py:arg``.
        seeds: the values of ``config.seed``.
        out: the sweep folder.
        overrides: ``--config.KEY=VALUE`` items applied to every config (before the seed).
        progress: show each run's progress bar.
        warn: receives the configs' warnings (see ``run_training``).

    Returns:
        ``{name: [each seed's scores.json summary]}`` in the order given.

    Raises:
        ConfigError: a config fails to load or validate (every config is loaded and checked
            before the first run starts).
    """
    out = Path(out)
    configs = {
        (run_name(arg), seed): load_config(arg, [*overrides, f"--config.seed={seed}"])
        for arg in config_args
        for seed in seeds
    }
    for config in configs.values():
        require_segmentation_data(config, "sweep")
    summaries: dict[str, list[dict]] = {}
    for (name, seed), config in configs.items():
        workdir = out / name / f"seed{seed}"
        scores = workdir / "scores.json"
        if not scores.exists():
            resume = (workdir / "config.json").exists()
            run_training(config, workdir, resume=resume, progress=progress, warn=warn)
        summaries.setdefault(name, []).append(json.loads(scores.read_text())["summary"])
    return summaries


def seed_statistics(summaries: dict[str, list[dict]]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """``{name: {column: (mean, std, seeds)}}`` over the seeds' per-run means of :data:`COLUMNS`.

    A run whose column has no finite value is left out of that column's statistics.
    """
    table = {}
    for name, runs in summaries.items():
        table[name] = {}
        for column in COLUMNS:
            values = [r[column]["mean"] for r in runs if r.get(column, {}).get("mean") is not None]
            values = [v for v in values if math.isfinite(v)]
            mean = float(np.mean(values)) if values else math.nan
            std = float(np.std(values)) if values else math.nan
            table[name][column] = (mean, std, len(values))
    return table


def write_tables(out: str | Path, stats: dict[str, dict[str, tuple[float, float, int]]]) -> str:
    """Write ``table.md``, ``table.csv`` and ``table.png`` into ``out``; return the markdown."""
    out = Path(out)
    lines = ["| config | seeds | " + " | ".join(COLUMNS) + " |", "|---|---" + "|---" * len(COLUMNS) + "|"]
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["config", "seeds", *(f"{c} {s}" for c in COLUMNS for s in ("mean", "std"))])
    for name, columns in stats.items():
        seeds = max(n for _, _, n in columns.values())
        cells = [f"{m:.4f} ± {s:.4f}" if n else "-" for m, s, n in columns.values()]
        lines.append(f"| {name} | {seeds} | " + " | ".join(cells) + " |")
        writer.writerow([name, seeds, *(f"{v:.6f}" for m, s, _ in columns.values() for v in (m, s))])
    markdown = "\n".join(lines) + "\n"
    with atomic_file(out / "table.md") as f:
        f.write(markdown)
    with atomic_file(out / "table.csv") as f:
        f.write(rows.getvalue())
    _plot(out / "table.png", stats)
    return markdown


def _plot(path: Path, stats: dict[str, dict[str, tuple[float, float, int]]]) -> None:
    """Grouped bars: one group per Dice column, one bar per config, std over seeds as error bars."""
    dice = [c for c in COLUMNS if c.startswith("Dice")]
    width = 0.8 / max(len(stats), 1)
    fig, ax = plt.subplots(figsize=(1.8 * len(dice) + 2, 3.6))
    for i, (name, columns) in enumerate(stats.items()):
        x = np.arange(len(dice)) + (i - (len(stats) - 1) / 2) * width
        means = [columns[c][0] for c in dice]
        stds = [columns[c][1] for c in dice]
        ax.bar(x, means, width, yerr=stds, capsize=3, label=name)
    ax.set_xticks(np.arange(len(dice)), [c.removeprefix("Dice ") for c in dice])
    ax.set_ylabel("Dice (test cases' mean; mean ± std over seeds)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
