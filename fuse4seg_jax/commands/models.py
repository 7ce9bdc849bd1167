"""``fuse4seg models``: every registered model with its parameter counts at the paper and demo sizes."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--family",
        choices=("fusion", "segmentation", "discriminator"),
        help="list only this family (default: all)",
    )


def parameter_count(family: str, name: str, preset: str) -> int:
    """Parameters of model ``family/name`` at size ``preset``, from shapes alone (no compute).

    Runtime arguments are the paper config's: its modalities, one input channel, its classes.
    """
    from flax import nnx

    from fuse4seg_jax import models
    from fuse4seg_jax.train.choices import runtime_arguments
    from fuse4seg_jax.train.defaults import base_config

    config = base_config()
    arguments = {
        **runtime_arguments(config, family, len(config.data.modalities)),
        **models.sizes(family, name, preset),
    }
    module = nnx.eval_shape(lambda: models.build(family, name, rngs=nnx.Rngs(0), **arguments))
    return models.count_params(nnx.state(module, nnx.Param))


def run(args: argparse.Namespace) -> int:
    from fuse4seg_jax.models import FAMILIES, names

    families = [args.family] if args.family else list(FAMILIES)
    print(f"{'family':<14} {'model':<22} {'paper sizes':>12} {'demo sizes':>12}")
    for family in families:
        for name in names(family):
            paper, demo = (parameter_count(family, name, preset) for preset in ("paper", "demo"))
            print(f"{family:<14} {name:<22} {paper:>12,} {demo:>12,}")
    return 0
