"""``fuse4seg <verb>``: the command line.

Each verb lives in its own module under ``fuse4seg_jax/commands/`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their verb
runs, so ``fuse4seg --help`` stays fast and a verb's heavy imports (JAX, TFDS) cost nothing
elsewhere.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fuse4seg_jax.errors import ConfigError, Fuse4SegError

# verb -> (module under fuse4seg_jax.commands, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "phantom": ("phantom", "write synthetic BraTS-layout cases (brain, tumour, 4 contrasts)"),
    "prepare": ("prepare", "turn BraTS or phantom cases into the ArrayRecord slice dataset"),
    "evaluate": ("evaluate", "score segmentations against ground truth, or fused images"),
    "models": ("models", "list registered models with their parameter counts at the paper and demo sizes"),
    "train": ("train", "train leader and follower as a config says; evaluate; write the report"),
    "fuse": ("fuse", "fuse a BraTS case or folders of image pairs with a trained run"),
    "segment": ("segment", "segment a BraTS case with a trained run (NIfTI, BraTS labels)"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fuse4seg",
        description="Bi-level image fusion + segmentation for multi-modal MRI (Fuse4Seg) in JAX.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)
    for verb, (module, help_text) in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(f"fuse4seg_jax.commands.{module}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb; a :class:`Fuse4SegError` becomes ``error: ...`` on stderr and exit code 2.

    ``--config.<key>=<value>`` arguments are set aside before parsing and handed to the verb as
    ``args.config_overrides`` (only verbs that read a config accept them).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = [a for a in argv if a.startswith("--config.")]
    args = _parser().parse_args([a for a in argv if not a.startswith("--config.")])
    args.config_overrides = overrides
    try:
        if overrides and not hasattr(args, "config"):
            raise ConfigError(f"{overrides[0]}: only verbs that take --config accept --config.* overrides")
        return int(importlib.import_module(f"fuse4seg_jax.commands.{args._module}").run(args) or 0)
    except Fuse4SegError as err:
        print(f"fuse4seg {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fuse4seg {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
