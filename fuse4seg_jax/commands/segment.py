"""``fuse4seg segment``: segment a BraTS case with a run; NIfTI out, BraTS labels, input geometry."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a run directory written by `fuse4seg train`")
    parser.add_argument("--case", required=True, help="one BraTS case folder (2021 or 2023 naming)")
    parser.add_argument("--out", required=True, help="output segmentation .nii.gz")
    parser.add_argument("--fused-out", default=None, help="also write the fused image (.nii.gz)")


def run(args: argparse.Namespace) -> int:
    from fuse4seg_jax import data
    from fuse4seg_jax.train.inference import fused_view, load_input_case, load_run, predict_case

    trainer, state = load_run(args.run)
    case = load_input_case(trainer, args.case)
    out = predict_case(trainer, state, case)
    print(data.write_like(out["pred"], case, args.out, labels=True))
    if args.fused_out:
        print(data.write_like(fused_view(trainer, out["view"], args.run), case, args.fused_out))
    return 0
