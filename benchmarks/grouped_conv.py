"""Grouped / depthwise convolution: XLA's feature_group_count conv against our shifted sum.

Prints forward and forward+backward time of both on the shapes our models use, measured
round-robin in one process, and the ratio (why ``fuse4seg_jax.models.grouped_conv`` exists).

    python -m benchmarks.grouped_conv [--batch 8] [--size 64] [--channels 32]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from benchmarks._timing import print_table, time_interleaved
from fuse4seg_jax.models.grouped_conv import grouped_conv


def xla_conv(x, kernel, groups):
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    c = args.channels
    x = jax.random.normal(jax.random.key(0), (args.batch, args.size, args.size, c))
    cases = {
        "3x3 depthwise": ((3, 3, 1, c), c),
        "7x7 depthwise": ((7, 7, 1, c), c),
        "3x3, 2 channels / group": ((3, 3, 2, c), c // 2),
    }
    rows = []
    for name, (shape, groups) in cases.items():
        kernel = jax.random.normal(jax.random.key(1), shape)
        fns = {}
        for impl, conv in (("xla", xla_conv), ("shifted sum", grouped_conv)):
            fwd = jax.jit(lambda x, k, conv=conv, g=groups: conv(x, k, g))
            both = jax.jit(
                jax.grad(lambda x, k, conv=conv, g=groups: jnp.sum(conv(x, k, g) ** 2), argnums=(0, 1))
            )
            fns[(impl, "forward")] = lambda fwd=fwd, k=kernel: fwd(x, k)
            fns[(impl, "forward+backward")] = lambda both=both, k=kernel: both(x, k)
        seconds = time_interleaved(fns, rounds=args.rounds)
        for part in ("forward", "forward+backward"):
            xla, ours = seconds[("xla", part)], seconds[("shifted sum", part)]
            rows.append((name, part, 1e3 * xla, 1e3 * ours, xla / ours))
    print(f"{jax.devices()[0].platform}: x {tuple(x.shape)}")
    print_table(("conv", "pass", "XLA grouped conv (ms)", "shifted sum (ms)", "speed-up"), rows)


if __name__ == "__main__":
    main()
