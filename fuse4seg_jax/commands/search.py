"""``fuse4seg search``: CAF's loss-weight search, retraining with the searched loss, the report."""

from __future__ import annotations

import argparse

from fuse4seg_jax.commands import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    train.add_arguments(parser)
    parser.epilog = (
        "Start from configs/caf_search.py (:demo on the phantom). Any config key can be set with "
        "--config.<key>=<value>, e.g. --config.bilevel.solver=unrolled --config.bilevel.inner_steps=3 "
        "--config.search.steps=500 --config.search.compare=\"('uniform','cddfuse','random')\". "
        "The searched weights (weights.json) retrain with `fuse4seg train --config.loss.caf_weights=PATH`."
    )


def run(args: argparse.Namespace) -> int:
    from fuse4seg_jax.search.run import run_search

    return train.run_config_verb(
        args, run_search, "report.md, weights.json, weights.png, retrain_*/, metrics.jsonl, checkpoints/"
    )
