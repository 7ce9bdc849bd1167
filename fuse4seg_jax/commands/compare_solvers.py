"""``fuse4seg compare-solvers``: several hypergradient solvers at one state, against a reference."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config file, e.g. configs/demo.py")
    parser.add_argument(
        "--run", default=None, help="study this run's checkpoint instead of a fresh state after warm-up"
    )
    parser.add_argument("--step", type=int, default=None, help="the run's checkpoint step (default: latest)")
    parser.add_argument(
        "--solvers",
        required=True,
        help="solver specs name[:key=value,...], comma-separated, e.g. "
        "first_order,implicit_cg:max_iter=20,tol=1e-5,unrolled",
    )
    parser.add_argument(
        "--reference",
        default="unrolled",
        help="unrolled (exact derivative of the K-step map), converged[:grad_tol=1e-6,max_steps=200,"
        "cg_iter=100,radius=1,lr=...,damping=0,tol=1e-6,max_iter=500] (follower minimised to grad_tol "
        "by trust-region Newton-CG, then damped CG), or any solver spec (default: unrolled)",
    )
    parser.add_argument("--x64", action="store_true", help="float64 parameters, data and losses")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (median; default 5)")
    parser.add_argument("--lanczos", type=int, default=30, help="Lanczos steps for the Hessian's extremes")
    parser.add_argument(
        "--stationary-tol", type=float, default=1e-6, help="gradient norm counted as stationary (1e-6)"
    )
    parser.add_argument("--out", default=None, help="output folder (default: runs/compare_solvers/<config>)")
    parser.epilog = (
        "Writes compare_solvers.csv, .md and .png. Wall times are ratios to first_order, timed "
        "interleaved in this process. --config.<key>=<value> overrides apply, e.g. "
        "--config.bilevel.distinct_inner_batches=True."
    )


def run(args: argparse.Namespace) -> int:
    import contextlib

    import jax

    # scoped, not global: a caller in the same process (a test, a notebook) keeps its setting
    with jax.enable_x64(True) if args.x64 else contextlib.nullcontext():
        return _study(args)


def _study(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    import jax

    import bilevel
    from bilevel import study
    from fuse4seg_jax.errors import ConfigError
    from fuse4seg_jax.train import solver_study
    from fuse4seg_jax.train.config import load_config

    if args.rounds < 1 or args.lanczos < 1:
        raise ConfigError(f"--rounds {args.rounds} and --lanczos {args.lanczos} must be >= 1")

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    config = load_config(args.config, args.config_overrides)
    try:
        solvers = bilevel.make_solvers(bilevel.parse_specs(args.solvers))
        study.parse_reference(args.reference)  # a bad reference fails before the warm-up, not after
    except bilevel.SolverConfigError as err:
        raise ConfigError(str(err)) from None
    out = Path(args.out or Path("runs") / "compare_solvers" / Path(args.config.partition(":")[0]).stem)
    trainer, state, at, what = solver_study.study_state(
        config, run=args.run, step=args.step, progress=progress
    )
    call = solver_study.study_point(trainer, state, at, x64=args.x64)
    key = jax.random.key(config.seed)
    ref, ref_info = study.reference(call, args.reference, key=key, num_iter=args.lanczos, progress=progress)
    rows = study.compare(call, solvers, ref, rounds=args.rounds, progress=progress)
    progress(f"curvature: Lanczos, {args.lanczos} steps")
    curvature = study.curvature_report(
        call, study.follower_point(call), num_iter=args.lanczos, grad_tol=args.stationary_tol, key=key
    )
    k = config.bilevel.inner_steps
    header = [
        f"# compare-solvers: {args.config}",
        "",
        f"State: {what}. Point: the first bi-level step's batches there, K = {k} inner steps "
        f"({'distinct D_tr draws' if config.bilevel.distinct_inner_batches else 'one D_tr batch, K times'}), "
        f"{'float64' if args.x64 else 'float32'}, {jax.devices()[0].platform.upper()}.",
        "",
        f"Reference: `{args.reference}`: {json.dumps(ref_info)}.",
        "",
        f"Curvature at the follower after K steps: {curvature['verdict']}",
    ]
    paths = solver_study.write_study(out, rows, header, f"{args.config}, reference {args.reference}")
    print(solver_study.markdown(rows, header))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
