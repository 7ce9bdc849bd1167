"""``fuse4seg train``: run a config's stages, evaluate, and write the report into a run directory."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        help="config file, e.g. configs/demo.py (file.py:arg passes arg to get_config)",
    )
    parser.add_argument("--workdir", default=None, help="run directory (default: runs/<config file name>)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --workdir from its latest checkpoint"
    )
    parser.add_argument("--overwrite", action="store_true", help="delete whatever run --workdir holds first")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the libraries' log messages (orbax, tfds) on the terminal; they always go to "
        "<workdir>/library.log",
    )
    parser.epilog = (
        "Any config key can be set with --config.<key>=<value>, e.g. --config.stages.bilevel=100 "
        "--config.bilevel.solver=implicit_cg --config.bilevel.options.implicit_cg.max_iter=20 "
        "--config.model.fusion=smfnet --config.model.fusion_sizes.smfnet.dim=32. The config is "
        "checked before anything is written; warnings go to stderr."
    )


def run(args: argparse.Namespace) -> int:
    from fuse4seg_jax.train.loop import run_training

    return run_config_verb(args, run_training, "report.md, gallery.png, metrics.jsonl, checkpoints/")


def run_config_verb(args: argparse.Namespace, runner: Callable[..., dict], outputs: str) -> int:
    """Load ``--config`` with its overrides, run ``runner`` in the run folder, print its tables.

    Arguments:
        args: the parsed arguments of :func:`add_arguments`.
        runner: ``run_training`` or a function of the same keyword arguments returning ``tables``.
        outputs: what the run folder holds, for the last line printed.

    Returns:
        0 (errors are raised as ``Fuse4SegError``).
    """
    import sys
    from pathlib import Path

    from fuse4seg_jax.train.config import load_config

    config = load_config(args.config, args.config_overrides)
    workdir = args.workdir or str(Path("runs") / Path(args.config.partition(":")[0]).stem)
    result = runner(
        config,
        workdir,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        verbose=args.verbose,
        warn=lambda message: print(f"warning: {message}", file=sys.stderr),
    )
    print(result["tables"])
    print(f"run directory: {workdir} ({outputs})")
    return 0
