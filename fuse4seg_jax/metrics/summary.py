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


def segmentation_row(scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Flatten ``segmentation_scores`` output to ``{"Dice ET": ..., "HD95 (mm) WT": ...}``.

    Columns are grouped by metric, then region, as in the papers' tables.
    """
    return {
        f"{title} {region}": float(per_region[key])
        for key, title in SEGMENTATION_COLUMNS.items()
        for region, per_region in scores.items()
    }


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def summarise(rows: Sequence[Mapping[str, object]], label: str = "mean ± std") -> str:
    """A markdown table of ``mean ± std`` per metric over the scored cases.

    Arguments:
        rows: one flat dict per case (see the module docstring). Non-numeric entries other than
            ``case`` and ``status`` are ignored; a non-finite value (NaN, inf) is left out of its
            column's statistics and counted in that column's ``n`` only if finite.
        label: the table line's name (a method name, for example).

    Returns:
        markdown: a header, one line ``| label | n | mean ± std | ... |`` (population std, ddof 0,
        4 decimals), and if any case was not scored a line naming them all.
    """
    columns: list[str] = []
    for row in rows:
        columns += [k for k, v in row.items() if _is_number(v) and k not in columns]
    scored = [row for row in rows if row.get("status", "ok") == "ok"]
    cells = []
    for column in columns:
        values = [float(r[column]) for r in scored if _is_number(r.get(column))]
        values = [v for v in values if math.isfinite(v)]
        if not values:
            cells.append("n/a")
            continue
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        partial = "" if len(values) == len(scored) else f" (n={len(values)})"
        cells.append(f"{mean:.4f} ± {std:.4f}{partial}")
    lines = [
        "| | n | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
        f"| {label} | {len(scored)} | " + " | ".join(cells) + " |",
    ]
    unscored = [
        f"{r.get('case', '?')} ({r['status']})" for r in rows if r.get("status", "ok") != "ok"
    ]
    if unscored:
        lines += ["", f"Not scored ({len(unscored)} of {len(rows)}): " + ", ".join(unscored)]
    return "\n".join(lines) + "\n"
