"""``fuse4seg phantom``: write synthetic BraTS-2021-layout cases."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to create (one sub-folder per case)")
    parser.add_argument("--cases", type=int, default=20, help="number of cases (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=(96, 96, 64),
        metavar=("X", "Y", "Z"),
        help="volume size in 1 mm voxels (default 96 96 64; BraTS is 240 240 155)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")


def run(args: argparse.Namespace) -> int:
    from fuse4seg_jax.data.phantom import write_phantom

    folders = write_phantom(args.out, args.cases, args.seed, tuple(args.shape), overwrite=args.overwrite)
    print(f"wrote {len(folders)} cases to {args.out}")
    return 0
