"""``compare-solvers``' work on the Fuse4Seg problem: the state, the point, and the written results.

The state is a fresh one after the config's stages before the bi-level rollout (pre-training,
warm-up), or a run's checkpoint; the point is the follower, leader, follower optimiser state and
the first bi-level step's batches there (D_tr stacked K times, or K draws with
``bilevel.distinct_inner_batches``). :mod:`bilevel.study` does the comparison.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import ml_collections
import numpy as np
from tqdm.auto import tqdm

import bilevel
from bilevel.solvers import SolverCall
from fuse4seg_jax import data, metrics
from fuse4seg_jax.atomic import atomic_file
from fuse4seg_jax.errors import ConfigError, DataError
from fuse4seg_jax.train import sharding
from fuse4seg_jax.train.checkpoint import Checkpoints
from fuse4seg_jax.train.config import diff_configs, to_json
from fuse4seg_jax.train.loop import batch_for, ensure_dataset
from fuse4seg_jax.train.objectives import cast_floats, microbatched
from fuse4seg_jax.train.rundir import RESUMABLE_KEYS
from fuse4seg_jax.train.trainer import State, Trainer

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Keys a studied run's config may differ in from --config: they do not change the state's layout.
STUDY_KEYS = ("data.", "bilevel.", "stages.", "batch.", "seed")
COLUMNS = (
    "solver",
    "cosine",
    "rel_error",
    "norm",
    "residual",
    "iterations",
    "failed",
    "reason",
    "inner_grad_norm",
    "time_ms",
    "time_ratio",
    "temp_mib",
)


def study_state(
    config: ml_collections.ConfigDict,
    *,
    run: str | Path | None = None,
    step: int | None = None,
    progress: Callable[[str], None] = print,
) -> tuple[Trainer, State, int, str]:
    """The trainer and the state to study, with its global step and a line saying what it is.

    Arguments:
        config: the config (its stages before ``bilevel`` are run for a fresh state).
        run: a run directory of this config to restore instead.
        step: the run's checkpoint step (default: its latest).
        progress: called with a line now and then.

    Returns:
        ``(trainer, state, global step, description)``.

    Raises:
        DataError: ``run`` is not a run directory or has no checkpoint ``step``.
        ConfigError: the run was trained with another config (the keys that differ are named).
    """
    if run is not None and not (Path(run) / "config.json").is_file():
        raise DataError(f"--run {run} is not a run directory: {Path(run) / 'config.json'} is missing")
    src = data.open_split(ensure_dataset(config), "train")
    trainer = Trainer(
        config, sharding.make_mesh(config.mesh.data, config.mesh.model), num_modalities=len(src.modalities)
    )
    if run is not None:
        return (trainer, *_restore(trainer, Path(run), step))
    state = trainer.init_state()
    warm = [(kind, n) for kind, n in trainer.plan.stages if kind != "bilevel"]
    at = 0
    for kind, n in warm:
        progress(f"{kind}: {n} steps")
        for _ in tqdm(range(n), desc=kind, dynamic_ncols=True):
            batches = [sharding.put_batch(trainer.mesh, b) for b in batch_for(kind, src, config, at)]
            state, _ = trainer.steps[kind](state, *batches)
            at += 1
    stages = ", ".join(f"{kind} {n}" for kind, n in warm) or "none"
    return trainer, state, at, f"a fresh state after the stages before the rollout ({stages})"


def _restore(trainer: Trainer, run: Path, step: int | None) -> tuple[State, int, str]:
    recorded = json.loads((run / "config.json").read_text())
    changed = diff_configs(recorded, json.loads(to_json(trainer.config)))
    fixed = [k for k in changed if not k.startswith((*RESUMABLE_KEYS, *STUDY_KEYS))]
    if fixed:
        raise ConfigError(f"--run {run} was trained with another config: it differs in {', '.join(fixed)}")
    checkpoints = Checkpoints(run / "checkpoints")
    steps = checkpoints.steps()
    step = steps[-1] if step is None and steps else step
    if step not in steps:
        raise DataError(f"--step {step}: {run / 'checkpoints'} holds steps {steps or 'none'}")
    state = checkpoints.restore(trainer.abstract_state(), step)
    checkpoints.close()
    return state, step, f"checkpoint step {step} of the run {run}"


def study_point(trainer: Trainer, state: State, at: int, *, x64: bool) -> SolverCall:
    """The first bi-level step's point at ``state``: batches of global step ``at``.

    With ``x64`` (JAX's x64 mode on) the parameters, optimiser state, images and losses are
    float64; the models are the same.
    """
    config = trainer.config
    [(inner_batches, val)] = outer_batches(trainer, at, 1)
    point = (state["follower"], state["leader"], state["follower_opt"], inner_batches, val)
    problem = trainer.problem
    if x64:
        objectives = dataclasses.replace(trainer.objectives, compute_dtype="float64")
        micro = int(config.batch.accumulation)
        problem = bilevel.Problem(
            microbatched(objectives.inner_loss, micro),
            microbatched(objectives.outer_loss, micro),
            has_aux=True,
        )
        point = cast_floats(point, np.float64)
    follower, leader, opt_state, inner_batches, val = point
    return SolverCall(problem, follower, leader, trainer.follower_opt, opt_state, inner_batches, val)


def outer_batches(trainer: Trainer, at: int, steps: int) -> list[tuple[dict, dict]]:
    """The bi-level batches of global steps ``at`` to ``at + steps - 1``, placed on the mesh.

    Returns:
        ``(inner_batches, val)`` per step: the K inner batches ``(K, B, ...)``
        (:meth:`Trainer.inner_batches`) and the D_val batch, as a training run draws them.
    """
    config = trainer.config
    src = data.open_split(ensure_dataset(config), "train")
    placed = []
    for step in range(at, at + steps):
        tr, val = (sharding.put_batch(trainer.mesh, b) for b in batch_for("bilevel", src, config, step))
        placed.append((trainer.inner_batches(tr), val))
    return placed


def outer_state(trainer: Trainer, state: State, solver: bilevel.Solver) -> bilevel.BilevelState:
    """The outer loop's state at a train state: its follower, leader, both optimiser states, its
    step, and ``solver``'s first state (what a bi-level stage started from ``state`` carries)."""
    follower, leader = state["follower"], state["leader"]
    return bilevel.BilevelState(
        follower,
        leader,
        state["follower_opt"],
        state["leader_opt"],
        state["step"],
        solver.init_state(follower, leader, trainer.follower_opt),
    )


def outer_loop(
    trainer: Trainer, state: State, batches: list[tuple[dict, dict]], spec: str, **options: Any
) -> dict[str, np.ndarray]:
    """The bi-level stage from ``state`` over ``batches`` with the solver ``spec`` names, recorded
    step by step (:func:`bilevel.trajectory.run`, which takes ``options``: ``reference``,
    ``restart_follower``, ``observe``).

    Arguments:
        trainer: the problem and both optimisers.
        state: the train state to start from (its follower and leader with their optimiser states).
        batches: :func:`outer_batches`.
        spec: one solver spec (:func:`bilevel.parse_specs`), e.g. ``implicit_cg:max_iter=2``.

    Returns:
        The record.

    Raises:
        bilevel.SolverConfigError: ``spec`` is not one valid solver spec.
    """
    solver = bilevel.solver_from_spec(spec)
    start = outer_state(trainer, state, solver)
    opts = {"inner_opt": trainer.follower_opt, "outer_opt": trainer.leader_opt}
    return bilevel.trajectory.run(trainer.problem, solver, start, batches, **opts, **options)[1]


def held_out_dice(trainer: Trainer, *, split: str = "val", size: int = 8) -> bilevel.trajectory.Observe:
    """An ``observe`` for :func:`bilevel.trajectory.run`: the follower's whole-tumour Dice on a
    fixed batch of ``size`` slices of ``split`` (patients it never trains on).

    The follower segments the leader's view (``eval_input``) of the batch; the Dice counts the
    voxels of the whole batch as one volume (``docs/conventions.md#metrics``; 1 when neither the
    prediction nor the labels hold tumour).

    Returns:
        ``observe(state) -> {"dice": float}``.
    """
    config = trainer.config
    src = data.open_split(ensure_dataset(config), split)
    batch = data.sample_batch(src, min(size, len(src)), seed=config.seed, step=0)
    images = sharding.put_batch(trainer.mesh, batch)["image"]
    whole = {"WT": metrics.REGIONS["WT"]}

    def observe(state: bilevel.BilevelState) -> dict[str, float]:
        pred = np.asarray(trainer.predict(state.outer_params, state.inner_params, images)["pred"])
        return {"dice": metrics.segmentation_scores(pred, batch["label"], regions=whole)["WT"]["dice"]}

    return observe


def markdown(rows: list[dict[str, Any]], header: list[str]) -> str:
    """The study as markdown: ``header`` lines, then one table row per solver."""
    names = ("solver", "cosine", "rel. error", "norm", "residual", "iter.", "reason", "time / FO", "temp MiB")
    lines = [*header, "", "| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for r in rows:
        cells = (
            f"`{r['solver']}`",
            f"{r['cosine']:.6f}",
            f"{r['rel_error']:.3g}",
            f"{r['norm']:.3g}",
            f"{r['residual']:.2g}",
            str(r["iterations"]),
            r["reason"],
            f"{r['time_ratio']:.2f}",
            f"{r['temp_mib']:.1f}",
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_study(out: Path, rows: list[dict[str, Any]], header: list[str], title: str) -> list[Path]:
    """``compare_solvers.csv``, ``compare_solvers.md`` and ``compare_solvers.png`` in ``out``.

    Returns:
        The paths written.
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"compare_solvers.{ext}" for ext in ("csv", "md", "png")]
    with atomic_file(paths[0]) as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with atomic_file(paths[1]) as f:
        f.write(markdown(rows, header))
    panels = (("cosine", "cosine to the reference"), ("rel_error", "relative error"))
    panels += (("time_ratio", "wall time / first_order"), ("temp_mib", "compiled temporaries (MiB)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    labels = [r["solver"] for r in rows]
    colours = ["tab:red" if r["failed"] else "tab:blue" for r in rows]
    for ax, (key, name) in zip(axes[0], panels, strict=True):
        ax.bar(range(len(rows)), [r[key] for r in rows], color=colours)
        ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(name, fontsize=9)
        if key == "rel_error" and all(r[key] > 0 for r in rows):
            ax.set_yscale("log")
    fig.suptitle(f"{title} (red: failed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(paths[2], dpi=90)
    plt.close(fig)
    return paths
