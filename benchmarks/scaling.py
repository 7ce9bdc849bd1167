"""Bi-level step time and images/s against device count (data-parallel, weak scaling).

Each device count gets its own mesh (the first n devices) and a global batch of
``per-device batch x n``; all meshes are timed round-robin in one process. On CPU, run with
simulated devices (the script sets 8 unless XLA_FLAGS says otherwise): that proves the sharded
code path, not speed, since the simulated devices share the machine's cores. On a GPU host,
``--peak-tflops`` (e.g. 989 for an H100 SXM's dense bf16) adds the compiled step's achieved
FLOP/s as a fraction of peak, from XLA's cost analysis.

    python -m benchmarks.scaling [--devices 1,2,4,8] [--per-device-batch 2] [--solver first_order]
"""

from __future__ import annotations

import argparse
import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", default="1,2,4,8")
    parser.add_argument("--per-device-batch", type=int, default=2)
    parser.add_argument("--solver", default="first_order")
    parser.add_argument("--config", default="configs/demo.py")
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="device peak, for the fraction")
    args = parser.parse_args()

    import jax

    from benchmarks._timing import print_table, time_interleaved
    from benchmarks.train_step import synthetic_batch
    from fuse4seg_jax.train.config import load_config
    from fuse4seg_jax.train.sharding import make_mesh, put_batch
    from fuse4seg_jax.train.trainer import Trainer

    counts = [n for n in map(int, args.devices.split(",")) if n <= jax.device_count()]
    fns, flops, images = {}, {}, {}
    for n in counts:
        b = args.per_device_batch * n
        config = load_config(
            args.config,
            [
                f"--config.bilevel.solver={args.solver}",
                f"--config.batch.tr_size={b}",
                f"--config.batch.val_size={b}",
                f"--config.mesh.data={n}",
            ],
        )
        mesh = make_mesh(n)
        trainer = Trainer(config, mesh, num_modalities=len(config.data.modalities))
        m = len(config.data.modalities)
        tr = put_batch(mesh, synthetic_batch(b, args.size, args.size, m, 0))
        val = put_batch(mesh, synthetic_batch(b, args.size, args.size, m, 1))
        holder = {"state": trainer.init_state()}
        compiled = trainer.steps["bilevel"].lower(holder["state"], tr, val).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        flops[n] = float(cost.get("flops", 0.0)) if cost else 0.0

        def step(trainer=trainer, holder=holder, tr=tr, val=val):
            holder["state"], metrics = trainer.steps["bilevel"](holder["state"], tr, val)
            return metrics

        fns[n] = step
        images[n] = config.bilevel.inner_steps * b + b
    seconds = time_interleaved(fns, rounds=args.rounds)
    base = seconds[counts[0]]
    print(
        f"{jax.devices()[0].platform}: solver {args.solver}, {args.size} x {args.size}, "
        f"{args.per_device_batch} images per device per batch"
    )
    rows = []
    for n, t in seconds.items():
        achieved = flops[n] / t / 1e12
        row = (n, 1e3 * t, images[n] / t, (images[n] / t) / (images[counts[0]] / base), achieved)
        rows.append(row + ((achieved / args.peak_tflops,) if args.peak_tflops else ()))
    header = ("devices", "ms / step", "images / s", "speed-up (images/s)", "TFLOP/s")
    print_table(header + (("fraction of peak",) if args.peak_tflops else ()), rows)


if __name__ == "__main__":
    main()
