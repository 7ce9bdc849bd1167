"""Per-case score rows and their summary as a markdown table shaped like the papers' tables.

A row is a flat dict for one case: ``"case"`` (its id), ``"status"`` (``"ok"`` or ``"missing"``) and
one number per metric column. :func:`summarise` turns the rows into one table line per method with
``mean ± std`` per column, the way Fuse4Seg / CDDFuse tables report them, and names every case that
was not scored so that none is silently left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

SEGMENTATION_COLUMNS = {
    "dice": "Dice",
    "iou": "IoU",
    "hd95_mm": "HD95 (mm)",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
}
"""Segmentation score key -> column title prefix (the region name is appended)."""


MEAN_REGIONS = ("NCR", "ED", "ET")
"""The regions whose mean is each metric's ``mean`` column: the papers' "Average" of the three
label regions (Fuse4Seg's tables), not of the nested TC / WT."""


def segmentation_row(scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Flatten ``segmentation_scores`` output to ``{"Dice ET": ..., "HD95 (mm) WT": ...}``.

    Columns are grouped by metric, then region, as in the papers' tables; when the scores hold
    every region of :data:`MEAN_REGIONS`, each metric ends with their per-case mean
    (``"Dice mean"``, ...).
    """
    row = {}
    for key, title in SEGMENTATION_COLUMNS.items():
        for region, per_region in scores.items():
            row[f"{title} {region}"] = float(per_region[key])
        if all(region in scores for region in MEAN_REGIONS):
            row[f"{title} mean"] = sum(float(scores[r][key]) for r in MEAN_REGIONS) / len(MEAN_REGIONS)
    return row


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def column_statistics(rows: Sequence[Mapping[str, object]]) -> dict[str, dict[str, float]]:
    """Mean, population std (ddof 0) and count of each numeric column over the scored rows.

    Arguments:
        rows: one flat dict per case (see the module docstring). Rows whose ``status`` is not
            ``"ok"`` are left out; so is a non-finite value (NaN, inf) from its column.

    Returns:
        ``{column: {"mean", "std", "n"}}`` in the columns' order of first appearance; a column with
        no finite value has NaN mean and std and ``n`` 0.
    """
    columns: list[str] = []
    for row in rows:
        columns += [k for k, v in row.items() if _is_number(v) and k not in columns]
    scored = [row for row in rows if row.get("status", "ok") == "ok"]
    stats = {}
    for column in columns:
        values = [float(r[column]) for r in scored if _is_number(r.get(column))]
        values = [v for v in values if math.isfinite(v)]
        n = len(values)
        mean = sum(values) / n if n else math.nan
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / n) if n else math.nan
        stats[column] = {"mean": mean, "std": std, "n": n}
    return stats


def summarise(rows: Sequence[Mapping[str, object]], label: str = "mean ± std") -> str:
    """A markdown table of ``mean ± std`` per metric over the scored cases.

    Arguments:
        rows: one flat dict per case (see the module docstring and :func:`column_statistics`).
        label: the table line's name (a method name, for example).

    Returns:
        markdown: a header, one line ``| label | n | mean ± std | ... |`` (population std, 4
        decimals; a column with fewer finite values than scored cases shows its own ``n``), and,
        if any case was not scored, a line naming each of them with its status.
    """
    stats = column_statistics(rows)
    n_scored = sum(1 for row in rows if row.get("status", "ok") == "ok")
    cells = []
    for column in stats.values():
        if not column["n"]:
            cells.append("n/a")
            continue
        partial = "" if column["n"] == n_scored else f" (n={column['n']})"
        cells.append(f"{column['mean']:.4f} ± {column['std']:.4f}{partial}")
    lines = [
        "| | n | " + " | ".join(stats) + " |",
        "|---|---|" + "---|" * len(stats),
        f"| {label} | {n_scored} | " + " | ".join(cells) + " |",
    ]
    unscored = [f"{r.get('case', '?')} ({r['status']})" for r in rows if r.get("status", "ok") != "ok"]
    if unscored:
        lines += ["", f"Not scored ({len(unscored)} of {len(rows)}): " + ", ".join(unscored)]
    return "\n".join(lines) + "\n"
