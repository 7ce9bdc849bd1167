"""``fuse4seg pairs``: write synthetic Harvard-style image pairs (MRI with CT, PET or SPECT)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fuse4seg_jax.data.synthetic_pairs import KINDS

    parser.add_argument(
        "--out", required=True, help="folder to create: <out>/MRI/*.png and <out>/<CT|PET|SPECT>/*.png"
    )
    parser.add_argument("--kind", required=True, choices=KINDS, help="which modality pairs with the MRI")
    parser.add_argument("--count", type=int, default=40, help="number of pairs (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--size", type=int, default=256, help="image side in pixels (default 256, as Harvard)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")


def run(args: argparse.Namespace) -> int:
    from fuse4seg_jax.data.synthetic_pairs import write_synthetic_pairs

    folders = write_synthetic_pairs(
        args.out, args.kind, args.count, args.seed, args.size, overwrite=args.overwrite
    )
    print(f"wrote {args.count} pairs to {folders[0]} and {folders[1]}")
    return 0
