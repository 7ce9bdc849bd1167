"""Time per bi-level outer step with the exactness monitor every M steps, as ratios to no monitor.

One trainer and one monitor (``fuse4seg_jax.train.monitor``) are compiled first; then, for each M,
a block of ``--steps`` outer steps runs with the monitor called before every M-th step (M = 0:
never), as the training loop calls it. The blocks are timed round-robin in one process (the
machine is noisy, so only ratios measured side by side mean anything), on synthetic batches of
the config's slice size, so no dataset is needed.

    python -m benchmarks.monitor_overhead [--every 0,1,5,20] [--steps 20] [--rounds 3]
        [--config configs/smoke.py] [--config.KEY=VALUE ...]
        (e.g. --config.bilevel.solver=implicit_cg --config.bilevel.monitor.reference=unrolled)
"""

from __future__ import annotations

import argparse

from benchmarks.train_step import synthetic_batch
from fuse4seg_jax.train.config import load_config
from fuse4seg_jax.train.sharding import make_mesh, put_batch
from fuse4seg_jax.train.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--every", default="0,1,5,20", help="the values of M, comma-separated")
    parser.add_argument("--steps", type=int, default=20, help="outer steps per timed block")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config", default="configs/smoke.py")
    args, overrides = parser.parse_known_args()
    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (config overrides are --config.KEY=VALUE)")
    every = [int(m) for m in args.every.split(",")]
    if any(m < 0 for m in every) or args.steps < 1 or args.rounds < 1:
        parser.error(f"--every {args.every} needs values >= 0, --steps and --rounds >= 1")

    from benchmarks._timing import print_table, time_interleaved
    from fuse4seg_jax.train.monitor import Monitor

    # the monitor's own `every` is set to 1 here; each block below decides which steps it watches
    config = load_config(args.config, [*overrides, "--config.bilevel.monitor.every=1"])
    mesh = make_mesh(config.mesh.data)
    n = len(config.data.modalities)
    size = config.data.phantom_shape[0]
    trainer = Trainer(config, mesh, num_modalities=n)
    monitor = Monitor(trainer)
    tr = put_batch(mesh, synthetic_batch(config.batch.tr_size, size, size, n, 0))
    val = put_batch(mesh, synthetic_batch(config.batch.val_size, size, size, n, 1))
    holder = {"state": trainer.init_state()}

    def block(m: int):
        def run():
            metrics = None
            for i in range(args.steps):
                if m > 0 and i % m == 0:  # before the step, which donates the state
                    monitor(holder["state"], tr, val)
                holder["state"], metrics = trainer.steps["bilevel"](holder["state"], tr, val)
            return metrics

        return run

    seconds = time_interleaved({m: block(m) for m in every}, rounds=args.rounds)
    base = seconds.get(0, next(iter(seconds.values())))
    print(
        f"{args.config}: one outer step ({config.bilevel.solver}, K = {config.bilevel.inner_steps}, "
        f"{size} x {size}), monitor reference {config.bilevel.monitor.reference}, "
        f"{config.bilevel.monitor.lanczos} Lanczos steps; {mesh.devices.size} device(s)"
    )
    print_table(
        ("monitor every M", "ms / outer step", "ratio to M = 0"),
        [(m if m else "never", 1e3 * t / args.steps, t / base) for m, t in seconds.items()],
    )


if __name__ == "__main__":
    main()
