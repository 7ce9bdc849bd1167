"""``fuse4seg sweep``: rerun configs over seeds; one table of test Dice (mean ± std over seeds)."""

from __future__ import annotations

import argparse


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds such as 0,1,2, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds repeat in {text!r}")
    return seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train and evaluate each config with each seed, one run directory per pair "
        "(<out>/<config name>/seed<k>/), then write table.md, table.csv and table.png: per config "
        "the mean ± std over seeds of the test Dice per region (NCR, ED, ET, their mean) and the "
        "mean IoU. Finished runs are kept and interrupted ones resumed, so a rerun completes a sweep."
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        required=True,
        help="config files (file.py or file.py:arg), e.g. "
        "configs/table3_{disjoint,variant_a,variant_b,full}.py:demo",
    )
    parser.add_argument(
        "--seeds", type=_seeds, default=[0, 1, 2], help="comma-separated seeds (default 0,1,2)"
    )
    parser.add_argument("--out", required=True, help="the sweep folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.epilog = "--config.<key>=<value> overrides apply to every config, e.g. --config.stages.bilevel=20."


def run(args: argparse.Namespace) -> int:
    import sys

    from fuse4seg_jax.train.sweep import run_sweep, seed_statistics, write_tables

    summaries = run_sweep(
        args.configs,
        args.seeds,
        args.out,
        args.config_overrides,
        progress=not args.no_progress,
        warn=lambda message: print(f"warning: {message}", file=sys.stderr),
    )
    print(write_tables(args.out, seed_statistics(summaries)))
    print(f"sweep folder: {args.out} (table.md, table.csv, table.png, one run directory per config and seed)")
    return 0
