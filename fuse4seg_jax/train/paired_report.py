"""The report of a run on paired folders: score files, a table of both methods, a gallery."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import ml_collections  # noqa: E402

from fuse4seg_jax.atomic import atomic_file  # noqa: E402
from fuse4seg_jax.data.paired import restore_colour  # noqa: E402
from fuse4seg_jax.metrics import write_scores  # noqa: E402
from fuse4seg_jax.train.paired import METHODS  # noqa: E402
from fuse4seg_jax.train.report import save_curves  # noqa: E402
from fuse4seg_jax.train.rundir import read_metrics  # noqa: E402

PSNR_NOTE = (
    "PSNR averages the MSE to each source, which the average rule minimises: no fused image can "
    "score a higher PSNR than the average rule (up to 8-bit rounding)."
)
AVERAGE_DIR = "average_rule"
"""Sub-folder of the run directory holding the average rule's ``scores.csv`` / ``scores.json``."""


def comparison_table(summary: dict[str, dict]) -> str:
    """Markdown: one line per method (mean ± std over pairs) and a line saying, per metric, whether
    the trained leader's mean beats the average rule's (every Table 2 metric is higher-better).

    ``summary`` is :func:`fuse4seg_jax.train.paired.evaluate_pairs`' ``summary``.
    """
    names = list(summary["leader"])
    lines = ["| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for method, title in METHODS.items():
        cells = [f"{summary[method][k]['mean']:.4f} ± {summary[method][k]['std']:.4f}" for k in names]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    wins = ["yes" if summary["leader"][k]["mean"] > summary["average"][k]["mean"] else "no" for k in names]
    lines.append("| leader higher | " + " | ".join(wins) + " |")
    return "\n".join(lines)


def save_pair_gallery(path: Path, samples: list[dict], modalities: tuple[str, ...]) -> None:
    """One row per pair: the first image (grey), the second in its colours, the average rule and the
    leader, both with the pair's colour restored."""
    titles = [*modalities, METHODS["average"], METHODS["leader"]]
    fig, axes = plt.subplots(
        len(samples), len(titles), figsize=(2.4 * len(titles), 2.5 * len(samples)), squeeze=False
    )
    for row, s in zip(axes, samples, strict=True):
        pair = s["pair"]
        panels = [pair.a, *(restore_colour(image, pair) for image in (pair.b, s["average"], s["leader"]))]
        for ax, panel, title in zip(row, panels, titles, strict=True):
            ax.imshow(panel, cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
        row[0].text(0, -0.08, pair.name, transform=row[0].transAxes, fontsize=7, va="top")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_pairs_report(workdir: Path, config: ml_collections.ConfigDict, result: dict, gallery: int) -> str:
    """Write the score files, ``gallery.png``, ``losses.png`` and ``report.md``; return the table.

    The trained leader's scores are ``scores.csv`` / ``scores.json`` (as in every run), the average
    rule's go to ``<workdir>/average_rule/`` (:func:`fuse4seg_jax.metrics.write_scores` for both).
    """
    write_scores(workdir, result["rows"]["leader"])
    write_scores(workdir / AVERAGE_DIR, result["rows"]["average"])
    pictures = []
    if result["samples"] and gallery > 0:
        save_pair_gallery(workdir / "gallery.png", result["samples"][:gallery], tuple(config.data.modalities))
        pictures.append("gallery.png")
    records = read_metrics(workdir / "metrics.jsonl") if (workdir / "metrics.jsonl").exists() else []
    if save_curves(workdir / "losses.png", records, ("loss", "recon", "decomp", "grad"), "losses"):
        pictures.append("losses.png")
    count = len(result["rows"]["leader"])
    tables = (
        f"## Fusion of {count} held-out pairs (split {config.eval.split}, luma, 8-bit)\n\n"
        f"{comparison_table(result['summary'])}\n\n{PSNR_NOTE}\n"
    )
    body = (
        f"# Fusion run report\n\nfusion `{config.model.fusion}` trained alone on the pairs of "
        f"`{config.data.paired_dir}` ({' + '.join(config.data.modalities)}), stages pretrain "
        f"{config.stages.pretrain}, fusion {config.stages.fusion}; scored against the pair's two "
        f"images, the average rule being their mean.\n\n{tables}\n"
        + "".join(f"![{p}]({p})\n" for p in pictures)
    )
    with atomic_file(workdir / "report.md") as f:
        f.write(body)
    return tables
