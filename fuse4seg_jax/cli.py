"""``fuse4seg <verb>``: the command line.

Each verb lives in its own module under ``fuse4seg_jax/commands/`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their verb
runs, so ``fuse4seg --help`` stays fast and a verb's heavy imports (JAX, TFDS) cost nothing
elsewhere.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from fuse4seg_jax.errors import ConfigError, Fuse4SegError

# verb -> (module under fuse4seg_jax.commands, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "phantom": ("phantom", "write synthetic BraTS-layout cases (brain, tumour, 4 contrasts)"),
    "pairs": ("pairs", "write synthetic Harvard-style pairs: MRI with CT, PET or SPECT, as PNG folders"),
    "prepare": ("prepare", "turn BraTS or phantom cases into the ArrayRecord slice dataset"),
    "evaluate": ("evaluate", "score segmentations against ground truth, or fused images"),
    "models": ("models", "list registered models with their parameter counts at the paper and demo sizes"),
    "train": ("train", "train leader and follower as a config says; evaluate; write the report"),
    "search": ("search", "search CAF's fusion-loss weights, retrain with them, compare, report"),
    "fuse": ("fuse", "fuse a BraTS case or folders of image pairs with a trained run"),
    "segment": ("segment", "segment a BraTS case with a trained run (NIfTI, BraTS labels)"),
    "sweep": ("sweep", "rerun configs over seeds; one table of test Dice, mean ± std over seeds"),
    "export-brats-fuse": (
        "export_brats_fuse",
        "write the BraTS-Fuse benchmark: sources, truth and every 2/3/4-modality fusion as PNGs",
    ),
    "compare-solvers": (
        "compare_solvers",
        "hypergradient solvers at one state against a reference: accuracy, cost, curvature",
    ),
}


CACHE_SWITCH = "FUSE4SEG_COMPILATION_CACHE"
CACHE_MAX_BYTES = 4 * 2**30


def compilation_cache_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment that turns on JAX's persistent compilation cache for a verb.

    A second run of the same config (or ``segment`` / ``fuse`` after ``train``) then loads its
    compiled programs instead of compiling them again, which on CPUs is most of a short run. The
    cache is ``$XDG_CACHE_HOME/fuse4seg_jax/jax`` (``~/.cache/...`` by default), kept under 4 GiB
    by JAX's least-recently-used eviction. ``FUSE4SEG_COMPILATION_CACHE=PATH`` moves it,
    ``FUSE4SEG_COMPILATION_CACHE=off`` turns it off, and a ``JAX_COMPILATION_CACHE_DIR`` already
    set is left alone. JAX reads these variables when it is imported, so they must be set before.

    Arguments:
        environ: the current environment.

    Returns:
        The variables to add (empty when the cache is off or set up by the user).
    """
    setting = environ.get(CACHE_SWITCH, "")
    if setting.lower() in ("off", "0", "false", "no") or "JAX_COMPILATION_CACHE_DIR" in environ:
        return {}
    cache_home = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".cache")
    path = setting or str(Path(cache_home) / "fuse4seg_jax" / "jax")
    min_seconds = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
    return {
        "JAX_COMPILATION_CACHE_DIR": path,
        "JAX_COMPILATION_CACHE_MAX_SIZE": environ.get("JAX_COMPILATION_CACHE_MAX_SIZE", str(CACHE_MAX_BYTES)),
        # JAX's default keeps only programs that took a second to compile; creating the models
        # compiles about 140 smaller ones (7 s per run on 2 CPU cores), which then load instead.
        min_seconds: environ.get(min_seconds, "0"),
    }


YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="


def xla_flags_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``XLA_FLAGS`` with XLA:CPU's YNNPACK fusions off, unless the user's flags choose them.

    jaxlib 0.10 hands convolutions and matrix products on CPU to YNNPACK fusions by default. On
    the project's 2-core CPU they made the paper-size models slower (2 x 128 x 128 forward: leader
    2.10 s against 1.11 s without them, follower 0.45 s against 0.18 s; forward+backward 8-12 %
    slower), and XLA:CPU loads a cached program holding thousands of them in time quadratic in
    their number (the demo's bi-level step: 28 s to load against 32 s to compile; without them
    10 s), so the compilation cache saved little. ``docs/conventions.md#speed-on-cpu`` has the
    measurements. XLA reads the variable when a backend starts, so it must be set before the first
    computation. GPU and TPU programs are unaffected.

    Arguments:
        environ: the current environment.

    Returns:
        ``{"XLA_FLAGS": ...}`` with the flag appended, or empty when ``XLA_FLAGS`` already sets
        ``xla_cpu_experimental_ynn_fusion_type``.
    """
    flags = environ.get("XLA_FLAGS", "")
    if "xla_cpu_experimental_ynn_fusion_type" in flags:
        return {}
    return {"XLA_FLAGS": f"{flags} {YNN_OFF}".strip()}


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
    os.environ.update(compilation_cache_env(os.environ))
    os.environ.update(xla_flags_env(os.environ))
    try:
        if overrides and not (hasattr(args, "config") or hasattr(args, "configs")):
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
