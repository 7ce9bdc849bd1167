"""What a person reads after a search: the weights' trajectories and ``report.md``."""

from __future__ import annotations

from pathlib import Path

import ml_collections

from fuse4seg_jax.atomic import atomic_file
from fuse4seg_jax.train.report import plt
from fuse4seg_jax.train.rundir import read_metrics

TOP_TERMS = 5
_REGIONS = ("NCR", "ED", "ET")  # the labelled classes; TC and WT are their unions
_FUSION_COLUMNS = ("MI", "VIF", "Qabf", "SSIM")


def save_weight_trajectories(path: Path, records: list[dict]) -> None:
    """Every ``weight.<term>`` of the metrics log against the iteration, one line per term; the
    warm-up iterations (beta held) shaded."""
    names = [k for k in records[0] if k.startswith("weight.")]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    warmup = [r["step"] for r in records if r.get("stage") == "warmup"]
    if warmup:
        ax.axvspan(0, max(warmup), color="0.9", label="task warm-up")
    steps = [r["step"] for r in records]
    for i, name in enumerate(names):  # tab20: one colour per term of the 15 (N = 2)
        style = "-" if i < 20 else "--"
        ax.plot(steps, [r[name] for r in records], style, color=plt.cm.tab20(i % 20), label=name[7:])
    ax.set_xlabel("iteration")
    ax.set_ylabel("softmax(beta)")
    ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _cell(summary: dict, key: str) -> str:
    entry = summary.get(key)
    return "-" if entry is None or not entry["n"] else f"{entry['mean']:.4f}"


def comparison_table(rows: dict[str, dict]) -> str:
    """One line per retraining row: Dice per tumour region and its mean, HD95, fusion scores.

    Arguments:
        rows: ``{row name: run_training's evaluation}`` (each with a ``summary``).

    Returns:
        A markdown table of the means over the test cases.
    """
    regions = _REGIONS
    fusion = [c for c in _FUSION_COLUMNS if any(c in row["summary"] for row in rows.values())]
    header = ["weights", *(f"Dice {r}" for r in regions), "mean Dice", "mean HD95 (mm)", *fusion]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in rows.items():
        summary = row["summary"]
        dice = [summary.get(f"Dice {r}", {}).get("mean", float("nan")) for r in regions]
        hd95 = [summary.get(f"HD95 (mm) {r}", {}).get("mean", float("nan")) for r in regions]
        cells = [
            name,
            *(_cell(summary, f"Dice {r}") for r in regions),
            f"{sum(dice) / len(dice):.4f}",
            f"{sum(hd95) / len(hd95):.2f}",
            *(_cell(summary, c) for c in fusion),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_search_report(
    workdir: Path, config: ml_collections.ConfigDict, weights: dict[str, float], rows: dict[str, dict]
) -> str:
    """Write ``weights.png`` and ``report.md``; return the report's tables.

    Arguments:
        workdir: the search's run folder (with its ``metrics.jsonl``).
        config: the search config.
        weights: the searched ``{term: weight}``.
        rows: ``{row name: evaluation}`` of the retraining runs, ``searched`` first.
    """
    save_weight_trajectories(workdir / "weights.png", read_metrics(workdir / "metrics.jsonl"))
    top = sorted(weights.items(), key=lambda item: -item[1])[:TOP_TERMS]
    tables = (
        "## Searched weights (top terms)\n\n| term | weight |\n|---|---|\n"
        + "".join(f"| {name} | {w:.4f} |\n" for name, w in top)
        + f"\n## Retrained with each loss ({config.eval.split} split, means over cases)\n\n"
        + comparison_table(rows)
        + "\n"
    )
    body = (
        f"# CAF loss-weight search\n\nsolver `{config.bilevel.solver}` (K = {config.bilevel.inner_steps}), "
        f"{config.search.warmup} warm-up and {config.search.steps} search steps, fusion "
        f"`{config.model.fusion}`, task `{config.model.segmentation}`; each row retrains a fresh "
        f"fusion network ({config.stages.fusion} steps) and task network "
        f"({config.stages.follower} steps) on its loss. Every weight: `weights.json`; each row's "
        f"full report: `retrain_<row>/report.md`.\n\n"
        f"{tables}\n![weights.png](weights.png)\n"
    )
    with atomic_file(workdir / "report.md") as f:
        f.write(body)
    return tables
