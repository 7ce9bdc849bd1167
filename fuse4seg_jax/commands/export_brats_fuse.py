"""``fuse4seg export-brats-fuse``: the BraTS-Fuse benchmark (sources, truth, every fusion) as PNGs."""

from __future__ import annotations

import argparse


def _sizes(text: str) -> list[int]:
    try:
        return [int(k) for k in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes such as 2,3,4, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write every case's axial slices with brain as 8-bit PNGs: the four normalised sources, the "
        "ground truth (BraTS label values) and the run's fusion of every combination of 2, 3 and 4 "
        "modalities, with an index.csv (layout: fuse4seg_jax/train/brats_fuse.py). Files already "
        "written are kept, so a rerun completes an interrupted export."
    )
    parser.add_argument("--run", required=True, help="a run directory written by `fuse4seg train`")
    parser.add_argument(
        "--manual-dir", required=True, help="BraTS 2021 / 2023 case folders with t1, t1ce, t2, flair and seg"
    )
    parser.add_argument("--out", required=True, help="the output folder (created; existing files are kept)")
    parser.add_argument(
        "--combinations",
        type=_sizes,
        default=[2, 3, 4],
        help="combination sizes to fuse, comma-separated (default 2,3,4)",
    )
    parser.add_argument("--cases", type=int, default=0, help="export only the first N cases (default: all)")


def run(args: argparse.Namespace) -> int:
    from fuse4seg_jax import data
    from fuse4seg_jax.train.brats_fuse import combinations, export
    from fuse4seg_jax.train.inference import load_run

    combinations(args.combinations)  # a bad size fails before the run is loaded
    cases = data.discover_cases(args.manual_dir)[: args.cases or None]
    trainer, state = load_run(args.run)
    counts = export(trainer, state, cases, args.out, args.combinations)
    print(
        f"{len(cases)} cases, {counts.rows} fused slices indexed in {args.out}/index.csv: "
        f"{counts.written} PNGs written, {counts.kept} already there"
    )
    return 0
