"""What a person reads after a run: ``report.md``, score tables, a PNG gallery and loss plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from fuse4seg_jax.atomic import atomic_file  # noqa: E402
from fuse4seg_jax.metrics import REGIONS, write_scores  # noqa: E402
from fuse4seg_jax.metrics.fusion import AGAINST_SOURCES, FUSED_ONLY  # noqa: E402
from fuse4seg_jax.metrics.summary import MEAN_REGIONS  # noqa: E402
from fuse4seg_jax.train.attention_gallery import save_attention_gallery  # noqa: E402
from fuse4seg_jax.train.monitor import KEYS as MONITOR_KEYS  # noqa: E402
from fuse4seg_jax.train.rundir import read_metrics  # noqa: E402

CLASS_COLOURS = np.array([[0, 0, 0], [230, 60, 60], [60, 200, 60], [250, 220, 40]], np.float32) / 255
SEG_SCORES = ("Dice", "IoU", "HD95 (mm)")
FUSION_SCORES = (*FUSED_ONLY, *AGAINST_SOURCES)


def _mean_std(summary: dict, key: str) -> str:
    if key not in summary or not summary[key]["n"]:
        return "-"
    return f"{summary[key]['mean']:.4f} ± {summary[key]['std']:.4f}"


def segmentation_table(summary: dict) -> str:
    """Markdown table: one line per region and one for the mean of NCR, ED and ET (each case's
    mean, then mean ± std over cases), Dice / IoU / HD95 (mm).

    ``summary`` is ``metrics.column_statistics`` of rows built with ``metrics.segmentation_row``.
    """
    lines = ["| region | " + " | ".join(SEG_SCORES) + " |", "|---|---|---|---|"]
    for region, name in [(r, r) for r in REGIONS] + [("mean", f"mean of {', '.join(MEAN_REGIONS)}")]:
        cells = [_mean_std(summary, f"{score} {region}") for score in SEG_SCORES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fusion_table(summary: dict) -> str:
    """Markdown table of the fusion scores (mean ± std over cases), empty if none were computed."""
    names = [k for k in FUSION_SCORES if k in summary]
    if not names:
        return ""
    return "\n".join(
        [
            "| " + " | ".join(names) + " |",
            "|" + "---|" * len(names),
            "| " + " | ".join(_mean_std(summary, k) for k in names) + " |",
        ]
    )


def overlay(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """RGB ``(H, W, 3)``: a grey image with class colours blended at 50 % where labels > 0."""
    grey = np.repeat(np.clip(image, 0, 1)[..., None], 3, axis=-1)
    colour = CLASS_COLOURS[labels]
    return np.where((labels > 0)[..., None], 0.5 * grey + 0.5 * colour, grey)


def save_gallery(path: Path, samples: list[dict], modalities: tuple[str, ...]) -> None:
    """One row per sample: each modality, the follower's view, prediction, truth, overlay."""
    titles = [*modalities, "follower input", "prediction", "ground truth", "overlay"]
    fig, axes = plt.subplots(
        len(samples), len(titles), figsize=(2.2 * len(titles), 2.3 * len(samples)), squeeze=False
    )
    for row, s in zip(axes, samples, strict=True):
        view = s["view"][..., 0] if s["view"].shape[-1] == 1 else s["view"].mean(axis=-1)
        panels = [s["image"][..., i] for i in range(s["image"].shape[-1])]
        panels += [view, CLASS_COLOURS[s["pred"]], CLASS_COLOURS[s["label"]], overlay(view, s["pred"])]
        for ax, panel, title in zip(row, panels, titles, strict=True):
            ax.imshow(panel, cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
        row[0].text(
            0, -0.12, f"{s['case_id']} slice {s['slice']}", transform=row[0].transAxes, fontsize=7, va="top"
        )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def save_curves(path: Path, records: list[dict], keys: tuple[str, ...], title: str) -> bool:
    """Plot ``keys`` of the metrics log against step, one panel per key; False if none present."""
    present = [k for k in keys if any(k in r for r in records)]
    if not present:
        return False
    fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3), squeeze=False)
    for ax, key in zip(axes[0], present, strict=True):
        for stage in dict.fromkeys(r["stage"] for r in records):
            pts = [(r["step"], r[key]) for r in records if r["stage"] == stage and key in r]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=stage)
        ax.set_title(key)
        ax.set_xlabel("step")
        if key in ("hypergrad_norm", "residual", "loss") and all(r[key] > 0 for r in records if key in r):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def solver_panels(records: list[dict]) -> tuple[str, ...]:
    """The hypergradient diagnostics worth a panel: the norm, and ``residual``, ``iterations`` and
    ``reason`` only where the solver ever set them (first-order logs them as 0 throughout), and the
    exactness monitor's metrics where it ran."""
    optional = ("residual", "iterations", "reason", *MONITOR_KEYS)
    return ("hypergrad_norm",) + tuple(k for k in optional if any(r.get(k, 0) != 0 for r in records))


def write_report(workdir: Path, config: ml_collections.ConfigDict, result: dict, gallery: int) -> str:
    """Write scores (CSV, JSON), pictures and ``report.md`` into ``workdir``; return the tables.

    The score files are those ``fuse4seg evaluate`` writes (:func:`fuse4seg_jax.metrics.write_scores`).
    ``result["attention"]`` (optional; ``(S, N - 1, heads, T, T)`` of the first ``S`` samples,
    ``fuse4seg_jax.train.attention_gallery.attention_maps``) adds ``attention.png``.
    """
    rows, summary = result["rows"], result["summary"]
    write_scores(workdir, rows)
    pictures = []
    if result["samples"] and gallery > 0:
        save_gallery(workdir / "gallery.png", result["samples"][:gallery], tuple(config.data.modalities))
        pictures.append("gallery.png")
    if result.get("attention") is not None:
        shown = result["samples"][: len(result["attention"])]
        save_attention_gallery(
            workdir / "attention.png", shown, result["attention"], tuple(config.data.modalities)
        )
        pictures.append("attention.png")
    records = read_metrics(workdir / "metrics.jsonl") if (workdir / "metrics.jsonl").exists() else []
    losses = ("loss", "seg", "decomp", "grad", "recon", "content", "adversarial")
    if save_curves(workdir / "losses.png", records, losses, "losses"):
        pictures.append("losses.png")
    if save_curves(
        workdir / "hypergradient.png",
        records,
        solver_panels(records),
        f"solver: {config.bilevel.solver}",
    ):
        pictures.append("hypergradient.png")
    tables = (
        f"## Segmentation ({len(rows)} cases, split {config.eval.split})\n\n{segmentation_table(summary)}\n"
    )
    fusion = fusion_table(summary)
    if fusion:
        tables += f"\n## Fusion (slice with most tumour per case, 8-bit)\n\n{fusion}\n"
    body = (
        f"# Fuse4Seg run report\n\nsolver `{config.bilevel.solver}`, fusion `{config.model.fusion}`, "
        f"segmentation `{config.model.segmentation}`, modalities {', '.join(config.data.modalities)}, "
        f"follower input at evaluation `{config.eval_input}`, stages "
        + ", ".join(f"{k} {config.stages[k]}" for k in ("pretrain", "fusion", "follower", "bilevel"))
        + f".\n\n{tables}\n"
        + "".join(f"![{p}]({p})\n" for p in pictures)
    )
    with atomic_file(workdir / "report.md") as f:
        f.write(body)
    return tables
