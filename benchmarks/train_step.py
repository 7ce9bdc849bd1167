"""Time per bi-level outer step for each solver on the demo sizes, as ratios to first-order.

All solvers are compiled first (the seconds to trace, lower and compile each step are printed,
and its compiled temporaries from XLA's memory analysis;
no persistent cache is used), then timed round-robin in one process (the machine is noisy, so
only ratios measured side by side mean anything). Synthetic batches of the demo's shape are used,
so no dataset is needed. On a GPU, ``--paper`` times paper-size models at 224 x 224 and prints
images per second.

    python -m benchmarks.train_step [--rounds 5] [--solvers first_order,unrolled,...] [--paper]
        [--config.KEY=VALUE ...]   (e.g. --config.bilevel.options.implicit_cg.solve_loop=while)

``--solvers`` takes solver specs (``bilevel.parse_specs``), so one solver can be timed with
different options side by side: ``--solvers first_order,unrolled,unrolled:reuse_outer_work=true``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import bilevel
from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.train.config import load_config
from fuse4seg_jax.train.sharding import make_mesh, put_batch
from fuse4seg_jax.train.trainer import Trainer

SOLVERS = ("first_order", "unrolled", "implicit_cg", "implicit_neumann", "finite_difference", "joint")


def synthetic_batch(size: int, height: int, width: int, modalities: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.random((size, height, width, modalities), dtype=np.float32),
        "label": rng.integers(0, 4, (size, height, width), dtype=np.int32),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--solvers", default=",".join(SOLVERS))
    parser.add_argument("--paper", action="store_true", help="paper sizes (224 x 224, batch 8)")
    args, overrides = parser.parse_known_args()
    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (config overrides are --config.KEY=VALUE)")

    from benchmarks._timing import print_table, time_interleaved

    config_file = "configs/brats2021_t1ce_flair.py" if args.paper else "configs/demo.py"
    size = 224 if args.paper else 64
    mesh = make_mesh(-1)
    fns, images, compile_seconds, temporaries = {}, {}, {}, {}
    try:
        specs = bilevel.parse_specs(args.solvers)
        for _, name, options in specs:  # a bad option or combination stops here, before compiling
            bilevel.make_solver(name, **options)
        configs = {
            solver: load_config(
                config_file,
                [
                    *overrides,
                    *(f"--config.bilevel.options.{name}.{key}={value!r}" for key, value in options.items()),
                    f"--config.bilevel.solver={name}",
                ],
            )
            for solver, name, options in specs
        }
    except (ConfigError, bilevel.SolverConfigError) as err:
        parser.error(str(err))
    for solver, config in configs.items():
        trainer = Trainer(config, mesh, num_modalities=len(config.data.modalities))
        n = len(config.data.modalities)
        tr = put_batch(mesh, synthetic_batch(config.batch.tr_size, size, size, n, 0))
        val = put_batch(mesh, synthetic_batch(config.batch.val_size, size, size, n, 1))
        holder = {"state": trainer.init_state()}
        start = time.perf_counter()
        compiled = trainer.steps["bilevel"].lower(holder["state"], tr, val).compile()
        compile_seconds[solver] = time.perf_counter() - start
        temporaries[solver] = compiled.memory_analysis().temp_size_in_bytes / 2**20

        def step(compiled=compiled, holder=holder, tr=tr, val=val):
            holder["state"], metrics = compiled(holder["state"], tr, val)
            return metrics

        fns[solver] = step
        images[solver] = config.bilevel.inner_steps * config.batch.tr_size + config.batch.val_size
    seconds = time_interleaved(fns, rounds=args.rounds)
    base = seconds.get("first_order", next(iter(seconds.values())))
    print(f"one outer step, {size} x {size}, K inner steps included; {mesh.devices.size} device(s)")
    print_table(
        ("solver", "ms / outer step", "ratio to first_order", "images / s", "compile s", "temporaries MiB"),
        [
            (s, 1e3 * t, t / base, images[s] / t, compile_seconds[s], temporaries[s])
            for s, t in seconds.items()
        ],
    )


if __name__ == "__main__":
    main()
