"""Relative hypergradient error against iterations, per solver, on the closed-form problems.

The standard plot of the field (``docs/solvers.md#verification``): ``||g_hat - g*|| / ||g*||`` in
float64.
"Iterations" are linear-solve iterations for the implicit solvers (follower at its exact best
response) and inner optimiser steps K from the problem's initial follower for the others (SGD with
``lr = 1 / L``, ``L`` the largest eigenvalue of the inner Hessian at the solution; the fixed point
iterates heavy-ball SGD with ``lr = 0.5 / L``, momentum 0.5; Neumann's step is ``1 / L``).

Usage (repository root): ``python -m benchmarks.hypergrad_convergence --out results/`` (writes
``hypergrad_convergence.png`` there and prints the table).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import bilevel
from bilevel import closed_form
from fuse4seg_jax.atomic import atomic_file

ITERATIONS = (1, 2, 4, 8, 16, 32, 64)
SOLVERS = (
    "implicit_cg",
    "implicit_neumann",
    "implicit_fixed_point",
    "unrolled",
    "finite_difference",
    "first_order",
)


def error_curve(cf: closed_form.ClosedFormProblem, name: str) -> list[float]:
    """Relative error of solver ``name`` at each entry of ``ITERATIONS``."""
    outer = cf.outer_init
    exact = cf.hypergradient(outer)
    lipschitz = float(jnp.linalg.eigvalsh(cf.inner_hessian(outer))[-1])
    sgd = optax.sgd(1.0 / lipschitz)
    errors = []
    for n in ITERATIONS:
        if name.startswith("implicit"):
            inner_opt = optax.sgd(0.5 / lipschitz, momentum=0.5) if "fixed" in name else sgd
            options = {"max_iter": n, "tol": 1e-14}
            if "step_size" in bilevel.solver_options(name):
                options["step_size"] = 1.0 / lipschitz
            solver = bilevel.make_solver(name, **options)
            inner, batches = cf.inner_solution(outer), cf.inner_batches(1)
        else:
            inner_opt, solver = sgd, bilevel.make_solver(name)
            inner, batches = cf.inner_init, cf.inner_batches(n)
        out = bilevel.hypergradient(
            cf.problem,
            solver,
            inner,
            outer,
            inner_opt,
            inner_opt.init(inner),
            batches,
            cf.outer_batch,
        )
        errors.append(float(jnp.linalg.norm(out.hypergrad - exact) / jnp.linalg.norm(exact)))
    return errors


def plot(curves: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.6), sharey=True)
    for ax, (problem, by_solver) in zip(np.atleast_1d(axes), curves.items(), strict=True):
        for name, errors in by_solver.items():
            ax.loglog(ITERATIONS, np.maximum(errors, 1e-17), marker="o", ms=3, label=name)
        ax.set_title(problem)
        ax.set_xlabel("iterations (solve) / inner steps K")
        ax.grid(True, which="both", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("relative error")
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/out"),
        help="folder for hypergrad_convergence.png",
    )
    args = parser.parse_args()
    with jax.enable_x64(True):
        made = {
            "ridge": closed_form.ridge(),
            "ridge_per_feature": closed_form.ridge(per_feature=True),
            "quadratic": closed_form.quadratic(),
            "logistic": closed_form.logistic(),
        }
        curves = {p: {s: error_curve(cf, s) for s in SOLVERS} for p, cf in made.items()}
    header = f"{'problem':18s} {'solver':21s}" + "".join(f"{n:>10d}" for n in ITERATIONS)
    print(header)
    print("-" * len(header))
    for problem, by_solver in curves.items():
        for name, errors in by_solver.items():
            print(f"{problem:18s} {name:21s}" + "".join(f"{e:10.1e}" for e in errors))
    plot(curves, args.out / "hypergrad_convergence.png")
    print(f"plot: {args.out / 'hypergrad_convergence.png'}")


if __name__ == "__main__":
    main()
