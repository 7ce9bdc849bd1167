"""Convolutions inside a compiled loop against the same convolutions traced once per iteration.

Why the inner steps are a Python loop by default (``docs/solvers.md#xlacpu-performance-facts``):
``N`` steps of a 3 x 3 convolution's forward pass, and ``N`` gradient steps on its kernel, each
compiled as a Python loop (``N`` copies) and as one ``jax.lax.fori_loop``, timed round-robin in
one process, with JAX's own reverse rule (``lax``) and with the models' ``same_conv``, whose rule
writes its gradients in the canonical order. The script also prints the dimension orders XLA
gives the convolutions in each program: outside loops XLA:CPU transposes the kernel gradient's
operands into the canonical order (``b01f_01io->b01f``); inside the loop body it keeps the order
JAX's rule writes it in.

    python -m benchmarks.loop_conv [--batch 4] [--size 32] [--channels 8] [--steps 10] [--rounds 20]
"""

from __future__ import annotations

import argparse
import re

import jax
import jax.numpy as jnp

from benchmarks._timing import print_table, time_interleaved
from fuse4seg_jax.models.same_conv import same_conv


def lax_conv(x, w):
    """(B, H, W, C) x (3, 3, C, C) -> (B, H, W, C), 'SAME' padding."""
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def programs(steps: int, conv):
    """``{(forward or kernel gradient, python loop or fori_loop): program}``, ``steps``
    iterations each, of the convolution ``conv(x, w)``."""

    def forward_step(x, w):
        return 0.1 * conv(x, w)

    def gradient_step(w, x):
        return w - 1e-6 * jax.grad(lambda w: jnp.sum(conv(x, w) ** 2))(w)

    def unrolled(step):
        def run(a, b):
            for _ in range(steps):
                a = step(a, b)
            return a

        return run

    def looped(step):
        return lambda a, b: jax.lax.fori_loop(0, steps, lambda _, a: step(a, b), a)

    return {
        ("forward", "python loop"): unrolled(forward_step),
        ("forward", "fori_loop"): looped(forward_step),
        ("kernel gradient", "python loop"): unrolled(gradient_step),
        ("kernel gradient", "fori_loop"): looped(gradient_step),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    x = jax.random.normal(jax.random.key(0), (args.batch, args.size, args.size, args.channels))
    w = jax.random.normal(jax.random.key(1), (3, 3, args.channels, args.channels))
    compiled, labels = {}, {}
    for rule, conv in (("lax", lax_conv), ("same_conv", same_conv)):
        for (kind, loop), fn in programs(args.steps, conv).items():
            operands = (x, w) if kind == "forward" else (w, x)
            program = jax.jit(fn).lower(*operands).compile()
            compiled[rule, kind, loop] = lambda program=program, operands=operands: program(*operands)
            labels[rule, kind, loop] = sorted(set(re.findall(r"dim_labels=(\S+?),", program.as_text())))
    seconds = time_interleaved(compiled, rounds=args.rounds)
    print(f"{args.steps} iterations, {jax.devices()[0].platform}, median of {args.rounds} rounds")
    print_table(
        ("rule", "pass", "loop", "ms per iteration", "x python loop", "convolutions' dim_labels"),
        [
            (*key, 1e3 * t / args.steps, t / seconds[(*key[:2], "python loop")], " ".join(labels[key]))
            for key, t in seconds.items()
        ],
    )


if __name__ == "__main__":
    main()
