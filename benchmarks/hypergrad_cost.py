"""Wall time and compiled peak memory of one outer step per solver, as ratios to first-order.

A small Fuse4Seg-shaped problem written inline with ``jax.lax.conv_general_dilated``: the leader
fuses N = 2 modalities into one image (two 3x3 convolutions), the follower segments the fused image
into 4 classes (three convolutions); K = 5 follower steps (SGD, momentum 0.9) per outer step, outer
Adam. All solvers are compiled first, then timed round-robin (median of ``--rounds`` rounds), so
the ratios are measured side by side in one run. Solvers that carry state between outer steps
(warm-started implicit, SOBA, F2SA, BOME) step from their own ``bilevel.init(..., solver=...)``
state; each timed call is one outer step from the same initial state. Memory is from
``jax.jit(step).lower(...).compile().memory_analysis()`` (see :func:`peak_mib`).
"unrolled (jax.grad)" is the reference
formulation, plain ``jax.grad`` through the K steps (reverse-over-reverse), for comparison with the
library's unrolled solver (forward-over-reverse step VJPs). "one HVP" is one Hessian-vector product
of the inner loss at the initial point (``bilevel.curvature.hvp``), timed in the same rounds, so
an implicit solver's cost can be read against first-order + its HVPs. A second table gives the
unrolled solver's peak memory at K = 1, 5, 20 with and without rematerialisation, stored
linearisations and reused leader work. ``--solvers`` adds rows for further solver specs
(``bilevel.parse_specs``), e.g. ``first_order:scan_inner=true,unrolled:scan_inner=true``.

Usage (repository root): ``python -m benchmarks.hypergrad_cost [--rounds 5] [--solvers SPECS]``.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import optax

import bilevel
from benchmarks._timing import time_interleaved
from bilevel import curvature, inner_loop

BATCH, SIZE, MODALITIES, CLASSES, WIDTH = 4, 32, 2, 4, 8
INNER_OPT = optax.sgd(0.01, momentum=0.9)
OUTER_OPT = optax.adam(1e-3)
STATIC = ("problem", "solver", "inner_opt", "outer_opt")


def _conv(x, w, b):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b


def _init_conv(key, k, c_in, c_out):
    w = jax.random.normal(key, (k, k, c_in, c_out), jnp.float32) / jnp.sqrt(k * k * c_in)
    return {"w": w, "b": jnp.zeros((c_out,), jnp.float32)}


def init_params(key):
    keys = jax.random.split(key, 5)
    leader = [_init_conv(keys[0], 3, MODALITIES, WIDTH), _init_conv(keys[1], 3, WIDTH, 1)]
    follower = [
        _init_conv(keys[2], 3, 1, WIDTH),
        _init_conv(keys[3], 3, WIDTH, WIDTH),
        _init_conv(keys[4], 1, WIDTH, CLASSES),
    ]
    return follower, leader


def fuse(leader, images):
    """(B, H, W, N) modalities in [0, 1] -> (B, H, W, 1) fused image in [0, 1]."""
    h = jax.nn.relu(_conv(images, **leader[0]))
    return jax.nn.sigmoid(_conv(h, **leader[1]))


def segment(follower, fused):
    """(B, H, W, 1) -> (B, H, W, CLASSES) logits."""
    h = jax.nn.relu(_conv(fused, **follower[0]))
    h = jax.nn.relu(_conv(h, **follower[1]))
    return _conv(h, **follower[2])


def _cross_entropy(follower, leader, batch):
    logits = segment(follower, fuse(leader, batch["images"]))
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]))


def inner_loss(follower, leader, batch):
    return _cross_entropy(follower, leader, batch)


def outer_loss(follower, leader, batch):
    fused = fuse(leader, batch["images"])
    fidelity = jnp.mean((fused - jnp.mean(batch["images"], axis=-1, keepdims=True)) ** 2)
    return _cross_entropy(follower, leader, batch) + 0.1 * fidelity


PROBLEM = bilevel.Problem(inner_loss, outer_loss)


def make_batch(key, leading=()):
    k1, k2 = jax.random.split(key)
    images = jax.random.uniform(k1, (*leading, BATCH, SIZE, SIZE, MODALITIES), jnp.float32)
    labels = jax.random.randint(k2, (*leading, BATCH, SIZE, SIZE), 0, CLASSES, jnp.int32)
    return {"images": images, "labels": labels}


def naive_unrolled_step(state, inner_batches, outer_batch):
    """Reference: ``jax.grad`` through the K plain steps, then the same outer update."""
    step = inner_loop.plain_step(PROBLEM, INNER_OPT)

    def rollout(leader):
        inner, opt_state, _ = inner_loop.run(
            step, state.inner_params, state.inner_opt_state, leader, inner_batches
        )
        return outer_loss(inner, leader, outer_batch), (inner, opt_state)

    (_, (inner, opt_state)), grad = jax.value_and_grad(rollout, has_aux=True)(state.outer_params)
    updates, outer_state = OUTER_OPT.update(grad, state.outer_opt_state, state.outer_params)
    return bilevel.BilevelState(
        inner,
        optax.apply_updates(state.outer_params, updates),
        opt_state,
        outer_state,
        state.step + 1,
    ), {}


def compile_step(solver, state, inner_batches, outer_batch):
    """The compiled outer step (``solver=None``: the naive reference)."""
    if solver is None:
        return jax.jit(naive_unrolled_step).lower(state, inner_batches, outer_batch).compile()
    return (
        jax.jit(bilevel.step, static_argnames=STATIC)
        .lower(
            state,
            inner_batches,
            outer_batch,
            problem=PROBLEM,
            solver=solver,
            inner_opt=INNER_OPT,
            outer_opt=OUTER_OPT,
        )
        .compile()
    )


def peak_mib(compiled) -> float:
    """Arguments + outputs + temporaries - aliased bytes of the compiled program, in MiB.

    (XLA:CPU's ``peak_memory_in_bytes`` counts arguments and outputs only, so the temporaries
    that differ between solvers are added from the same ``memory_analysis()``.)
    """
    m = compiled.memory_analysis()
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
    return (total - m.alias_size_in_bytes) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--k", type=int, default=5, help="inner steps per outer step")
    parser.add_argument("--solvers", default="", help="further solver specs, e.g. unrolled:scan_inner=true")
    args = parser.parse_args()
    try:
        extra = bilevel.make_solvers(bilevel.parse_specs(args.solvers)) if args.solvers else {}
    except bilevel.SolverConfigError as err:
        parser.error(str(err))

    follower, leader = init_params(jax.random.key(0))
    inner_batches = make_batch(jax.random.key(1), (args.k,))
    outer_batch = make_batch(jax.random.key(2))
    solvers = {
        "first_order": bilevel.make_solver("first_order"),
        "unrolled": bilevel.make_solver("unrolled"),
        "unrolled (remat)": bilevel.make_solver("unrolled", remat=True),
        "unrolled (stored linearisation)": bilevel.make_solver("unrolled", store_linearization=True),
        "unrolled (reuse outer work)": bilevel.make_solver("unrolled", reuse_outer_work=True),
        "unrolled (jax.grad)": None,
        "implicit_cg (10 it.)": bilevel.make_solver("implicit_cg", max_iter=10),
        "implicit_neumann (10 it.)": bilevel.make_solver("implicit_neumann", max_iter=10),
        "implicit_fixed_point (10 it.)": bilevel.make_solver("implicit_fixed_point", max_iter=10),
        "implicit_jaxopt (10 it.)": bilevel.make_solver("implicit_jaxopt", max_iter=10),
        "implicit_cg (2 it.)": bilevel.make_solver("implicit_cg", max_iter=2),
        "implicit_cg_warm (2 it.)": bilevel.make_solver("implicit_cg_warm", max_iter=2),
        "implicit_neumann_warm (2 it.)": bilevel.make_solver("implicit_neumann_warm", max_iter=2),
        "soba": bilevel.make_solver("soba"),
        "f2sa": bilevel.make_solver("f2sa"),
        "bome": bilevel.make_solver("bome"),
        "finite_difference": bilevel.make_solver("finite_difference"),
        "joint": bilevel.make_solver("joint"),
        **extra,
    }
    states = {
        name: bilevel.init(follower, leader, INNER_OPT, OUTER_OPT, solver=s) for name, s in solvers.items()
    }
    compiled = {
        name: compile_step(s, states[name], inner_batches, outer_batch) for name, s in solvers.items()
    }
    last_batch = inner_loop.batch_at(inner_batches, -1)
    # The point is passed as arguments: closed over, XLA can fold the gradient into a constant.
    hvp = jax.jit(lambda u, i, o, batch: curvature.hvp(lambda i, o: inner_loss(i, o, batch), i, o, u))
    median = time_interleaved(
        {
            **{
                name: (lambda fn=fn, state=states[name]: fn(state, inner_batches, outer_batch))
                for name, fn in compiled.items()
            },
            "one HVP": lambda: hvp(follower, follower, leader, last_batch),
        },
        rounds=args.rounds,
    )
    memory = {name: peak_mib(fn) for name, fn in compiled.items()}

    print(
        f"one outer step, K = {args.k}, {jax.devices()[0].platform}, median of {args.rounds} rounds, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    print(f"{'solver':32s} {'ms':>9s} {'time x':>8s} {'peak MiB':>9s} {'memory x':>9s}")
    for name in solvers:
        print(
            f"{name:32s} {1e3 * median[name]:9.1f} "
            f"{median[name] / median['first_order']:8.2f} {memory[name]:9.2f} "
            f"{memory[name] / memory['first_order']:9.2f}"
        )

    one_hvp, cg = median["one HVP"], median["implicit_cg (10 it.)"]
    budget = median["first_order"] + 10 * one_hvp
    print(
        f"\none HVP {1e3 * one_hvp:.2f} ms ({one_hvp / median['first_order']:.2f} x first_order);"
        f" implicit_cg (10 it.) {1e3 * cg:.1f} ms = {cg / budget:.2f} x"
        f" (first_order + 10 HVPs = {1e3 * budget:.1f} ms)"
    )

    print("\nunrolled solver, compiled peak memory (MiB)")
    variants = {
        "no remat": {},
        "remat": {"remat": True},
        "stored lin.": {"store_linearization": True},
        "remat + stored": {"remat": True, "store_linearization": True},
        "reuse outer": {"reuse_outer_work": True},
        "remat + reuse": {"remat": True, "reuse_outer_work": True},
    }
    print(f"{'K':>4s} " + " ".join(f"{name:>15s}" for name in variants))
    for k in (1, 5, 20):
        batches = make_batch(jax.random.key(3), (k,))
        row = [
            peak_mib(compile_step(bilevel.Unrolled(**options), states["unrolled"], batches, outer_batch))
            for options in variants.values()
        ]
        print(f"{k:4d} " + " ".join(f"{value:15.2f}" for value in row))


if __name__ == "__main__":
    main()
