"""Several solvers at one point, against a reference: how exact, how costly, and whether IFT applies.

:func:`compare` evaluates each solver's hypergradient at the same point (the same follower, leader,
optimiser state and batches) and reports its cosine and relative error to a reference, its norm,
its diagnostics, its wall time as a ratio to ``first_order`` (timed interleaved, median over
rounds) and its compiled temporaries; :func:`curvature_report` says whether the implicit function
theorem's assumptions hold at the follower's point. A reference is any solver, or
:func:`converge_follower` followed by a damped CG solve (the implicit hypergradient at a follower
minimised to a stated gradient norm). See ``docs/solvers.md#comparing-solvers-at-one-point``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import optax

from bilevel import inner_loop, tree, trust_region
from bilevel.errors import SolverConfigError
from bilevel.linear_solve import REASONS
from bilevel.registry import make_solver, make_solvers, parse_specs
from bilevel.solvers import Solver, SolverCall
from bilevel.spectrum import inner_hessian_extremes

PyTree = Any
Progress = Callable[[str], None]


def converge_follower(
    call: SolverCall,
    *,
    grad_tol: float,
    max_steps: int,
    lr: float,
    cg_iter: int = 100,
    radius: float = 1.0,
    progress: Progress = print,
) -> tuple[SolverCall, dict[str, float]]:
    """The follower minimised on the inner loss (last inner batch) until ``||grad|| <= grad_tol``.

    By trust-region Newton-CG (:func:`bilevel.trust_region.minimise`) rather than the follower's
    optimiser: Adam's or AdamW's fixed points are not stationary points of the loss, which is what
    the implicit hypergradient assumes, and gradient descent stalls far above a gradient norm of
    1e-6 on the Fuse4Seg networks (``docs/solvers.md#converging-the-follower``).

    Arguments:
        call: the point; the minimisation starts from its ``inner_params``.
        grad_tol: the gradient norm to reach.
        max_steps: the most Newton steps.
        lr: the step of the plain SGD optimiser in the returned call.
        cg_iter: the most Hessian-vector products per Newton step.
        radius: the initial trust radius.
        progress: called with a line now and then.

    Returns:
        ``(call at the reached point, {"grad_norm", "loss", "steps", "accepted", "hvps",
        "radius"})`` (:class:`bilevel.trust_region.Minimum`'s numbers): the call's inner
        optimiser is ``optax.sgd(lr)`` and its inner batches the last one, so a solver given it
        takes one more step, of ``lr`` times the reached gradient norm (the follower's own
        optimiser would not stay: Adam's first step moves every coordinate by about its
        learning rate).
    """
    last = inner_loop.batch_at(call.inner_batches, -1)
    reached = trust_region.minimise(
        lambda inner, outer, batch: call.problem.inner_value(inner, outer, batch)[0],
        call.inner_params,
        call.outer_params,
        last,
        grad_tol=grad_tol,
        max_steps=max_steps,
        cg_iter=cg_iter,
        radius=radius,
        progress=progress,
    )
    sgd = optax.sgd(lr)
    point = call._replace(
        inner_params=reached.params,
        inner_opt=sgd,
        inner_opt_state=sgd.init(reached.params),
        inner_batches=jax.tree.map(lambda x: x[None], last),
    )
    keys = ("grad_norm", "loss", "steps", "accepted", "hvps", "radius")
    return point, {k: getattr(reached, k) for k in keys}


def _jitted(solver: Solver, call: SolverCall):
    """``solver`` at ``call`` compiled, and its array arguments."""

    def run(inner, outer, opt_state, inner_batches, outer_batch):
        out = solver(call.problem, inner, outer, call.inner_opt, opt_state, inner_batches, outer_batch)
        return out.hypergrad, out.diagnostics, out.inner_params

    args = (call.inner_params, call.outer_params, call.inner_opt_state, call.inner_batches, call.outer_batch)
    return jax.jit(run).lower(*args).compile(), args


def compare(
    call: SolverCall,
    solvers: dict[str, Solver],
    reference: PyTree,
    *,
    rounds: int = 5,
    progress: Progress = print,
) -> list[dict[str, Any]]:
    """Each solver's hypergradient at ``call`` against ``reference``, with its cost.

    Arguments:
        call: the point, shared by every solver.
        solvers: ``{label: solver}``; ``first_order`` is added as the timing baseline if absent.
        reference: the hypergradient to compare with (``outer_params``' structure).
        rounds: timing rounds; each runs every solver once, in turn, after one untimed call.
        progress: called with a line per compiled solver and timing round.

    Returns:
        One row per solver: ``solver``, ``cosine`` and ``rel_error`` to the reference, ``norm``,
        the diagnostics ``residual``, ``iterations``, ``failed``, ``reason`` (its name),
        ``inner_grad_norm``, ``time_ms`` (median), ``time_ratio`` (to first_order's median) and
        ``temp_mib`` (the compiled program's temporaries, XLA's memory analysis).
    """
    solvers = {"first_order": make_solver("first_order"), **solvers}
    compiled = {}
    for label, solver in solvers.items():
        progress(f"compiling {label}")
        compiled[label] = _jitted(solver, call)
    outputs = {label: jax.block_until_ready(fn(*args)) for label, (fn, args) in compiled.items()}
    times: dict[str, list[float]] = {label: [] for label in solvers}
    for r in range(rounds):
        for label, (fn, args) in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[label].append(time.perf_counter() - start)
        progress(f"timing round {r + 1}/{rounds}")
    baseline = statistics.median(times["first_order"])
    ref_norm = tree.norm(reference)
    rows = []
    for label, (hypergrad, diagnostics, _) in outputs.items():
        norm = tree.norm(hypergrad)
        memory = compiled[label][0].memory_analysis()
        rows.append(
            {
                "solver": label,
                "cosine": float(tree.cosine(hypergrad, reference)),
                "rel_error": float(tree.norm(tree.sub(hypergrad, reference)) / ref_norm),
                "norm": float(norm),
                "residual": float(diagnostics["residual"]),
                "iterations": int(diagnostics["iterations"]),
                "failed": bool(diagnostics["failed"]),
                "reason": REASONS[int(diagnostics["reason"])],
                "inner_grad_norm": float(diagnostics["inner_grad_norm"]),
                "time_ms": 1e3 * statistics.median(times[label]),
                "time_ratio": statistics.median(times[label]) / baseline,
                "temp_mib": memory.temp_size_in_bytes / 2**20 if memory is not None else float("nan"),
            }
        )
    return rows


def follower_point(call: SolverCall) -> PyTree:
    """The follower after the call's K inner steps (where every solver evaluates its hypergradient)."""
    fn, args = _jitted(make_solver("first_order"), call)
    return fn(*args)[2]


def curvature_report(
    call: SolverCall, inner: PyTree, *, num_iter: int, grad_tol: float, key: jax.Array
) -> dict[str, Any]:
    """Whether the implicit function theorem applies at ``inner`` (the follower after K steps).

    Arguments:
        call: the point (problem, leader, inner batches: the last one defines the inner loss).
        inner: the follower's parameters to examine.
        num_iter: Lanczos steps for the Hessian's extreme eigenvalues.
        grad_tol: the gradient norm below which the follower counts as stationary.
        key: PRNG key of Lanczos' start vector.

    Returns:
        ``{"grad_norm", "smallest", "largest", "lanczos_iterations", "verdict"}``, the verdict a
        sentence.
    """
    last = inner_loop.batch_at(call.inner_batches, -1)

    # a while loop compiles one Lanczos step, not num_iter of them (minutes on a CPU)
    @jax.jit
    def measure(inner, outer, batch):
        grad = jax.grad(lambda i: call.problem.inner_value(i, outer, batch)[0])(inner)
        est = inner_hessian_extremes(
            call.problem, inner, outer, batch, num_iter=num_iter, key=key, loop="while"
        )
        return tree.norm(grad), est

    grad_norm, est = measure(inner, call.outer_params, last)
    grad_norm, smallest, largest = float(grad_norm), float(est.smallest), float(est.largest)
    stationary = grad_norm <= grad_tol
    positive = smallest > 0
    parts = [
        f"the follower is {'' if stationary else 'not '}stationary (gradient norm {grad_norm:.3g} "
        f"{'<=' if stationary else '>'} {grad_tol:g})",
        (
            f"no negative eigenvalue of its Hessian was found (Lanczos, {int(est.iterations)} steps: "
            f"[{smallest:.3g}, {largest:.3g}])"
            if positive
            else f"its Hessian is not positive definite (smallest eigenvalue {smallest:.3g} <= 0, "
            f"largest {largest:.3g}; Lanczos, {int(est.iterations)} steps)"
        ),
    ]
    holds = "hold" if stationary and positive else "do not hold"
    verdict = f"IFT's assumptions {holds}: {parts[0]}, and {parts[1]}."
    return {
        "grad_norm": grad_norm,
        "smallest": smallest,
        "largest": largest,
        "lanczos_iterations": int(est.iterations),
        "verdict": verdict,
    }


def solve_reference(solver: Solver, call: SolverCall) -> tuple[PyTree, dict[str, Any]]:
    """``solver``'s hypergradient at ``call`` and its diagnostics as Python numbers."""
    fn, args = _jitted(solver, call)
    hypergrad, diagnostics, _ = fn(*args)
    info = {k: v.item() for k, v in jax.device_get(diagnostics).items()}
    info["reason"] = REASONS[int(info["reason"])]
    return hypergrad, info


CONVERGED_OPTIONS = {
    "grad_tol": 1e-6,
    "max_steps": 200,
    "cg_iter": 100,
    "radius": 1.0,
    "lr": None,
    "damping": 0.0,
    "tol": 1e-6,
    "max_iter": 500,
}


def parse_reference(spec: str) -> tuple[str, Solver | None, dict[str, Any]]:
    """Check a reference spec (see :func:`reference`) before any work.

    Returns:
        ``(spec as written, solver, {})`` for a solver spec, ``(spec, None, options)`` for
        ``converged``.

    Raises:
        SolverConfigError: not one spec, an unknown solver or an unknown option, naming it.
    """
    specs = parse_specs(spec)
    if len(specs) != 1:
        raise SolverConfigError(f"reference {spec!r} names {len(specs)} solvers; give one")
    [(written, name, options)] = specs
    if name != "converged":
        return written, make_solvers(specs)[written], {}
    unknown = sorted(set(options) - set(CONVERGED_OPTIONS))
    if unknown:
        raise SolverConfigError(
            f"reference {spec!r}: unknown option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(CONVERGED_OPTIONS)}"
        )
    return written, None, options


def reference(
    call: SolverCall, spec: str, *, key: jax.Array, num_iter: int = 30, progress: Progress = print
) -> tuple[PyTree, dict[str, Any]]:
    """The reference hypergradient a spec names, and what was reached computing it.

    ``spec`` is a solver spec (:func:`parse_specs`, e.g. ``unrolled`` for the exact derivative of
    the K-step map) or ``converged[:option=value,...]``: the follower minimised from its current
    point to ``grad_tol`` by :func:`converge_follower` (at most ``max_steps`` trust-region Newton
    steps of at most ``cg_iter`` Hessian-vector products each, from trust radius ``radius``; the
    returned call's SGD step ``lr`` by default ``1 / lambda_max`` of the Hessian by Lanczos), then
    ``Implicit`` with CG to ``tol`` (at most ``max_iter`` iterations) and ``damping`` (options and
    defaults: :data:`CONVERGED_OPTIONS`).

    Arguments:
        call: the point.
        spec: the reference.
        key: PRNG key of Lanczos' start vector (``converged`` without ``lr``).
        num_iter: Lanczos steps for the default ``lr``.
        progress: called with a line now and then.

    Returns:
        ``(hypergradient, info)``; ``info`` holds ``reference`` (the spec), the solver's
        diagnostics, and for ``converged`` what the minimisation reached (``descent_grad_norm``,
        ``descent_loss``, ``descent_steps``, ``descent_accepted``, ``descent_hvps``,
        ``descent_radius``), the CG solve's ``damping`` and ``lr``.

    Raises:
        SolverConfigError: an unknown solver or option, naming the spec.
    """
    written, solver, options = parse_reference(spec)
    if solver is not None:
        progress(f"reference: {written}")
        hypergrad, info = solve_reference(solver, call)
        return hypergrad, {"reference": written, **info}
    o = {**CONVERGED_OPTIONS, **options}
    lr = o["lr"]
    if lr is None:
        last = inner_loop.batch_at(call.inner_batches, -1)
        largest = jax.jit(
            lambda i, out, b: (
                inner_hessian_extremes(
                    call.problem, i, out, b, num_iter=num_iter, key=key, loop="while"
                ).largest
            )
        )(call.inner_params, call.outer_params, last)
        lr = 1.0 / float(largest)
    progress(f"reference: trust-region Newton minimisation of the follower to {o['grad_tol']:g}")
    reached, descent = converge_follower(
        call,
        grad_tol=o["grad_tol"],
        max_steps=o["max_steps"],
        lr=lr,
        cg_iter=o["cg_iter"],
        radius=o["radius"],
        progress=progress,
    )
    solver = make_solver(
        "implicit_cg", damping=o["damping"], tol=o["tol"], max_iter=o["max_iter"], solve_loop="while"
    )
    hypergrad, info = solve_reference(solver, reached)
    descent = {f"descent_{k}": v for k, v in descent.items()}
    return hypergrad, {"reference": spec, **info, **descent, "damping": o["damping"], "lr": lr}
