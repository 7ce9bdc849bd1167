"""Time per CAF search iteration for each solver on the demo sizes, as ratios to first-order.

One iteration is Algorithm 1's three updates (task step, K fusion steps, beta's hypergradient
step). Every solver is compiled first, then all are timed round-robin in one process; synthetic
batches of the demo's shape (64 x 64, D_train and D_search of 4 slices) stand in for data.
``first_order`` gives beta a zero hypergradient here (the task loss does not read beta), so it is
the cost floor of an iteration, not a usable search.

    python -m benchmarks.caf_search [--rounds 5] [--solvers first_order,finite_difference,...]
        [--config.KEY=VALUE ...]   (e.g. --config.bilevel.inner_steps=3)

Pass ``--config.bilevel.options.implicit_cg.solve_loop=while``: the default Python loop traces
every CG iteration, which took over 20 minutes to compile on a loaded 2-core machine.
"""

from __future__ import annotations

import argparse

from benchmarks.train_step import synthetic_batch
from fuse4seg_jax.train.config import load_config
from fuse4seg_jax.train.sharding import make_mesh, put_batch

SOLVERS = ("first_order", "finite_difference", "unrolled", "implicit_cg")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--solvers", default=",".join(SOLVERS))
    args, overrides = parser.parse_known_args()
    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (config overrides are --config.KEY=VALUE)")

    from benchmarks._timing import print_table, time_interleaved
    from fuse4seg_jax.search.searcher import Searcher

    mesh = make_mesh(-1)
    fns = {}
    for solver in args.solvers.split(","):
        config = load_config("configs/caf_search.py:demo", [*overrides, f"--config.bilevel.solver={solver}"])
        n = len(config.data.modalities)
        searcher = Searcher(config, mesh, num_modalities=n)
        train = put_batch(mesh, synthetic_batch(config.batch.tr_size, 64, 64, n, 0))
        search = put_batch(mesh, synthetic_batch(config.batch.val_size, 64, 64, n, 1))
        holder = {"state": searcher.init_state()}

        def step(searcher=searcher, holder=holder, train=train, search=search):
            holder["state"], metrics = searcher.step(holder["state"], train, search)
            return metrics

        fns[solver] = step
    seconds = time_interleaved(fns, rounds=args.rounds)
    base = seconds.get("first_order", next(iter(seconds.values())))
    print(f"one search iteration, 64 x 64, K = {config.bilevel.inner_steps}; {mesh.devices.size} device(s)")
    print_table(
        ("solver", "ms / iteration", "ratio to first_order"),
        [(s, 1e3 * t, t / base) for s, t in seconds.items()],
    )


if __name__ == "__main__":
    main()
