"""``fuse4seg prepare``: BraTS (or phantom) volumes -> the ArrayRecord slice dataset."""

from __future__ import annotations

import argparse

from fuse4seg_jax.data.brats import DEFAULT_MODALITIES, MODALITIES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manual-dir", required=True, help="folder of BraTS 2021/2023 case folders")
    parser.add_argument("--data-dir", required=True, help="tfds data dir to write the dataset under")
    parser.add_argument(
        "--modalities",
        nargs="+",
        default=list(DEFAULT_MODALITIES),
        help=f"channels in order, any of {' '.join(MODALITIES)} (default: {' '.join(DEFAULT_MODALITIES)})",
    )
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the patient split (default 0)")
    parser.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=(0.7, 0.1, 0.2),
        metavar=("TRAIN", "VAL", "TEST"),
        help="patient fractions per split (default 0.7 0.1 0.2)",
    )
    parser.add_argument("--overwrite", action="store_true", help="rebuild an existing dataset")


def run(args: argparse.Namespace) -> int:
    from fuse4seg_jax.data.dataset import available_splits, open_split, prepare_dataset

    path = prepare_dataset(
        args.manual_dir,
        args.data_dir,
        modalities=args.modalities,
        split_seed=args.split_seed,
        fractions=args.fractions,
        overwrite=args.overwrite,
    )
    sizes = []
    for split in available_splits(path):
        src = open_split(path, split)
        sizes.append(f"{split} {len(src.case_ids)} cases / {len(src)} slices")
    print(f"prepared {path}: {'; '.join(sizes)}")
    return 0
