"""Forward and forward+backward time of every registered model, measured side by side in one run.

Batch: 2 images of ``--size`` x ``--size``; fusion models get 2 modalities, segmentation models
and discriminators 1 channel. Each model at its default (paper) sizes, jitted; the time is the
median of ``--repeats`` runs after one compile-and-warm-up call. The backward pass is the
gradient of the sum of the main output with respect to all parameters.

    python benchmarks/models.py --size 128
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from fuse4seg_jax.models import FAMILIES, create, names


def _main_output(family: str, out):
    return out["fused"] if family == "fusion" else out


def _median_seconds(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (224)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model (3)")
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind}, batch 2 x {args.size} x {args.size}")
    print(f"{'family':<14} {'model':<22} {'forward ms':>11} {'fwd+bwd ms':>11} {'ratio':>6}")
    for family in FAMILIES:
        channels = 2 if family == "fusion" else 1
        for name in names(family):
            sizes = {"num_modalities": 2} if family == "fusion" else {}
            model, params = create(family, name, key=jax.random.key(0), **sizes)
            x = jax.random.uniform(jax.random.key(1), (2, args.size, args.size, channels))

            def forward(p, x, model=model, family=family):
                return _main_output(family, model.apply(p, x))

            def loss(p, x, forward=forward):
                return jnp.sum(forward(p, x))

            fwd = _median_seconds(jax.jit(forward), params, x, repeats=args.repeats)
            bwd = _median_seconds(jax.jit(jax.grad(loss)), params, x, repeats=args.repeats)
            print(
                f"{family:<14} {name:<22} {1e3 * fwd:>11.1f} {1e3 * bwd:>11.1f} {bwd / fwd:>6.2f}"
            )


if __name__ == "__main__":
    main()
