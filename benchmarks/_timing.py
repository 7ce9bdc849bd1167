"""Shared timing for the benchmark scripts: interleaved rounds, medians, ratios to a baseline."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import jax

from fuse4seg_jax.cli import xla_flags_env

# The benchmarks measure what the command line runs: XLA:CPU flags as `fuse4seg` sets them (read
# when the backend starts, so before any benchmark's first computation).
os.environ.update(xla_flags_env(os.environ))


def time_interleaved(fns: dict[str, Callable[[], object]], rounds: int = 5) -> dict[str, float]:
    """Median seconds per call of each function, measured round-robin so machine noise is shared.

    Every function is called once first (compilation, excluded), then once per round in turn;
    results are blocked on (``jax.block_until_ready``) so device time is included.
    """
    for fn in fns.values():
        jax.block_until_ready(fn())
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in samples.items()}


def print_table(header: tuple[str, ...], rows: list[tuple]) -> None:
    """A markdown table on stdout."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |")
