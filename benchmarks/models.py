"""Forward and forward+backward time of every registered model, measured side by side in one run.

Batch: 2 images of ``--size`` x ``--size``; fusion models get 2 modalities, segmentation models
and discriminators 1 channel. Each model at its default (paper) sizes, jitted; every model is
compiled and warmed up first, then all are timed round-robin (``--rounds`` rounds, median), so
the machine's noise falls on all of them alike. The backward pass is the gradient of the sum of
the main output with respect to all parameters.

    python -m benchmarks.models [--size 224] [--rounds 3]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from benchmarks._timing import print_table, time_interleaved
from fuse4seg_jax.models import FAMILIES, create, names


def _main_output(family: str, out):
    return out["fused"] if family == "fusion" else out


def _timed_calls(family: str, name: str, size: int) -> dict[str, object]:
    """Zero-argument forward and forward+backward calls of one model on its batch."""
    channels = 2 if family == "fusion" else 1
    sizes = {"num_modalities": 2} if family == "fusion" else {}
    model, params = create(family, name, key=jax.random.key(0), **sizes)
    x = jax.random.uniform(jax.random.key(1), (2, size, size, channels))

    def forward(p, x):
        return _main_output(family, model.apply(p, x))

    fwd = jax.jit(forward)
    bwd = jax.jit(jax.grad(lambda p, x: jnp.sum(forward(p, x))))
    return {"fwd": lambda: fwd(params, x), "bwd": lambda: bwd(params, x)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (224)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, median reported (3)")
    args = parser.parse_args()
    models = [(family, name) for family in FAMILIES for name in names(family)]
    fns = {}
    for family, name in models:
        for kind, fn in _timed_calls(family, name, args.size).items():
            fns[(name, kind)] = fn
    seconds = time_interleaved(fns, rounds=args.rounds)
    print(f"device: {jax.devices()[0].device_kind}, batch 2 x {args.size} x {args.size}, "
          f"median of {args.rounds} interleaved rounds")
    rows = [
        (family, name, 1e3 * seconds[(name, "fwd")], 1e3 * seconds[(name, "bwd")],
         seconds[(name, "bwd")] / seconds[(name, "fwd")])
        for family, name in models
    ]
    print_table(("family", "model", "forward ms", "fwd+bwd ms", "fwd+bwd / fwd"), rows)


if __name__ == "__main__":
    main()
