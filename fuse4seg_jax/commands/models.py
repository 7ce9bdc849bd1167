"""``fuse4seg models``: every registered model with its parameter count at the paper sizes."""

from __future__ import annotations

import argparse

# Sizes a family's constructors need beyond their defaults (the defaults are the paper sizes).
REQUIRED_SIZES = {"fusion": {"num_modalities": 2}, "segmentation": {}, "discriminator": {}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--family",
        choices=("fusion", "segmentation", "discriminator"),
        help="list only this family (default: all)",
    )


def parameter_count(family: str, name: str) -> int:
    """Parameters of model ``family/name`` at its default sizes, from shapes alone (no compute)."""
    from flax import nnx

    from fuse4seg_jax.models import count_params, registry

    constructor = registry._REGISTRY[(family, name)]
    module = nnx.eval_shape(lambda: constructor(rngs=nnx.Rngs(0), **REQUIRED_SIZES[family]))
    return count_params(nnx.state(module, nnx.Param))


def run(args: argparse.Namespace) -> int:
    from fuse4seg_jax.models import FAMILIES, names

    families = [args.family] if args.family else list(FAMILIES)
    rows = [(f, n, parameter_count(f, n)) for f in families for n in names(f)]
    print(f"{'family':<14} {'model':<22} {'parameters':>12}")
    for family, name, count in rows:
        print(f"{family:<14} {name:<22} {count:>12,}")
    return 0
