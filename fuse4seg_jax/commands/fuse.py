"""``fuse4seg fuse``: fuse a BraTS case (NIfTI out) or folders of image pairs (PNG out) with a run."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a run directory written by `fuse4seg train`")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--case", help="one BraTS case folder (2021 or 2023 naming)")
    src.add_argument(
        "--pairs",
        nargs=2,
        metavar=("DIR_A", "DIR_B"),
        help="two folders of PNGs matched by file name (Harvard-style pairs)",
    )
    parser.add_argument("--out", required=True, help="output .nii.gz for --case, output folder for --pairs")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from fuse4seg_jax import data
    from fuse4seg_jax.atomic import atomic_dir
    from fuse4seg_jax.errors import ConfigError
    from fuse4seg_jax.train.evaluation import predict_volume
    from fuse4seg_jax.train.inference import fused_view, load_input_case, load_run, predict_case

    trainer, state = load_run(args.run)
    if args.case:
        case = load_input_case(trainer, args.case)
        fused = fused_view(trainer, predict_case(trainer, state, case)["view"], args.run)
        print(data.write_like(fused, case, args.out))
        return 0
    pairs = data.read_paired_folder(*args.pairs)
    if len(trainer.config.data.modalities) != 2:
        raise ConfigError(f"{args.run} fuses {len(trainer.config.data.modalities)} modalities; pairs have 2")
    with atomic_dir(Path(args.out), overwrite=True) as tmp:
        for pair in pairs:
            images = np.stack([pair.a, pair.b], axis=-1)[None]
            view = predict_volume(trainer, state, images)["view"]
            fused = fused_view(trainer, view, args.run)[0]
            Image.fromarray(data.restore_colour(fused, pair)).save(tmp / pair.name)
    print(f"{len(pairs)} fused images in {args.out}")
    return 0
