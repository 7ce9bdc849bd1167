"""Forward and forward+backward time and memory of every registered model, side by side in one run.

Batch: 2 images of ``--size`` x ``--size``; fusion models get 2 modalities, segmentation models
and discriminators 1 channel. Each model at its registered paper sizes, jitted. Every program is
compiled first (its compile time printed) and its peak temporary memory read from XLA's memory
analysis and its FLOP count from XLA's cost analysis; achieved FLOP/s are printed as a fraction of
a 4096 x 4096 float32 matmul's, measured in the same process, so machines compare; programs that fit
in ``--max-gib`` are then timed round-robin (``--rounds`` rounds, median), so the machine's noise
falls on all of them alike, and the others are reported with their memory only. The backward
pass is the gradient of the sum of the main output with respect to all parameters.

    python -m benchmarks.models [--size 224] [--rounds 3] [--max-gib 14]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp

from benchmarks._timing import print_table, time_interleaved
from fuse4seg_jax.models import FAMILIES, create, names, sizes


def _main_output(family: str, out):
    return out["fused"] if family == "fusion" else out


def _compiled_calls(family: str, name: str, size: int) -> dict[str, tuple[object, float, float, float]]:
    """``{"fwd" | "bwd": (zero-argument call, temporary GiB, GFLOP, compile s)}`` for one model."""
    channels = 2 if family == "fusion" else 1
    runtime = {"num_modalities": channels} if family == "fusion" else {}
    model, params = create(family, name, key=jax.random.key(0), **runtime, **sizes(family, name, "paper"))
    x = jax.random.uniform(jax.random.key(1), (2, size, size, channels))

    def forward(p, x):
        return _main_output(family, model.apply(p, x))

    calls = {}
    for kind, fn in (("fwd", forward), ("bwd", jax.grad(lambda p, x: jnp.sum(forward(p, x))))):
        start = time.perf_counter()
        compiled = jax.jit(fn).lower(params, x).compile()
        seconds = time.perf_counter() - start
        gib = compiled.memory_analysis().temp_size_in_bytes / 2**30
        gflop = compiled.cost_analysis().get("flops", 0.0) / 1e9
        calls[kind] = (lambda compiled=compiled: compiled(params, x), gib, gflop, seconds)
    return calls


def matmul_gflops(rounds: int) -> float:
    """GFLOP/s of a 4096 x 4096 float32 matmul on this device (the yardstick of the fractions)."""
    a = jax.random.normal(jax.random.key(0), (4096, 4096))
    matmul = jax.jit(jnp.matmul)
    seconds = time_interleaved({"matmul": lambda: matmul(a, a)}, rounds=rounds)["matmul"]
    return 2 * 4096**3 / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (224)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, median reported (3)")
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    parser.add_argument(
        "--max-gib",
        type=float,
        default=0.6 * ram,
        help=f"time only programs whose temporaries fit (default 60%% of RAM: {0.6 * ram:.0f})",
    )
    parser.add_argument("--models", default="", help="comma-separated model names (default: all)")
    args = parser.parse_args()
    models = [
        (family, name)
        for family in FAMILIES
        for name in names(family)
        if not args.models or name in args.models.split(",")
    ]
    calls = {
        (name, kind): c
        for family, name in models
        for kind, c in _compiled_calls(family, name, args.size).items()
    }
    seconds = time_interleaved(
        {key: c[0] for key, c in calls.items() if c[1] <= args.max_gib}, rounds=args.rounds
    )
    peak = matmul_gflops(args.rounds)
    print(
        f"device: {jax.devices()[0].device_kind}, batch 2 x {args.size} x {args.size}, "
        f"median of {args.rounds} interleaved rounds; GiB = XLA temporaries of the compiled program; "
        f"not timed where over {args.max_gib:.0f} GiB; matmul {peak:.0f} GFLOP/s; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )

    def ms(key):
        return 1e3 * seconds[key] if key in seconds else "not timed"

    def fraction(key):
        return calls[key][2] / seconds[key] / peak if key in seconds else ""

    rows = []
    for family, name in models:
        fwd, bwd = (name, "fwd"), (name, "bwd")
        rows.append(
            (family, name, ms(fwd), ms(bwd), fraction(fwd), fraction(bwd), calls[fwd][1], calls[bwd][1])
            + (calls[fwd][3], calls[bwd][3])
        )
    header = (
        "family",
        "model",
        "forward ms",
        "fwd+bwd ms",
        "fwd matmul frac.",
        "fwd+bwd matmul frac.",
        "fwd GiB",
        "fwd+bwd GiB",
        "fwd compile s",
        "fwd+bwd compile s",
    )
    print_table(header, rows)


if __name__ == "__main__":
    main()
