"""``scores.csv`` and ``scores.json``: the per-case score rows on disk, one format and one NaN policy.

Both ``fuse4seg evaluate`` and the training report write their scores here, so the two files read
the same whichever wrote them:

- ``scores.csv``: one line per row (see :mod:`fuse4seg_jax.metrics.summary`), the columns in order
  of first appearance; a column a row lacks (a ``missing`` case has no scores) is an empty cell.
- ``scores.json``: ``{"cases": [rows], "missing": [case ids], "summary": {column: {"mean", "std",
  "n"}}}``, the summary being :func:`~fuse4seg_jax.metrics.summary.column_statistics` of the rows.

NaN policy: a NaN or infinite value (a score that is undefined for a case) is written as an empty
CSV cell and as JSON ``null``, so both files stay valid for strict readers; the summary is over
the finite values of the scored rows only and its ``n`` says how many there were (a column with
none has ``null`` mean and std). Each file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from fuse4seg_jax.atomic import atomic_file
from fuse4seg_jax.metrics.summary import column_statistics


def _finite_or(value: object, undefined: object) -> object:
    return undefined if isinstance(value, float) and not math.isfinite(value) else value


def write_scores(
    folder: str | os.PathLike, rows: Sequence[Mapping[str, object]], missing: Sequence[str] = ()
) -> None:
    """Write ``folder/scores.csv`` and ``folder/scores.json`` (see the module docstring).

    Arguments:
        folder: the output folder (created if needed).
        rows: one flat dict per case (``case``, ``status`` and one number per score).
        missing: ids of the cases that have no prediction (their rows say ``missing``).
    """
    folder = Path(folder)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _finite_or(v, "") for k, v in row.items()} for row in rows)
    report = {
        "cases": [{k: _finite_or(v, None) for k, v in row.items()} for row in rows],
        "missing": list(missing),
        "summary": {
            column: {k: _finite_or(v, None) for k, v in stats.items()}
            for column, stats in column_statistics(rows).items()
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(folder / "scores.csv") as f:
        f.write(table.getvalue())
    with atomic_file(folder / "scores.json") as f:
        json.dump(report, f, indent=2, ensure_ascii=False, allow_nan=False)
