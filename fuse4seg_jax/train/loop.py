"""``run_training``: data, stages, logging, checkpoints, resume, evaluation and the report.

Each global step draws its batch deterministically from (seed, step), so a run resumed from a
checkpoint sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from fuse4seg_jax import data
from fuse4seg_jax.errors import TrainingError
from fuse4seg_jax.train import sharding, stages
from fuse4seg_jax.train.attention_gallery import attention_maps
from fuse4seg_jax.train.checkpoint import Checkpoints
from fuse4seg_jax.train.checks import config_warnings, validate_config
from fuse4seg_jax.train.config import to_json
from fuse4seg_jax.train.evaluation import evaluate
from fuse4seg_jax.train.monitor import monitor_for
from fuse4seg_jax.train.paired import evaluate_pairs, open_pairs
from fuse4seg_jax.train.paired_report import write_pairs_report
from fuse4seg_jax.train.report import write_report
from fuse4seg_jax.train.rundir import LIBRARY_LOG, MetricsLog, library_log, open_run, run_lock
from fuse4seg_jax.train.trainer import Trainer


def ensure_dataset(config: ml_collections.ConfigDict) -> Path:
    """Generate phantom cases (if configured and absent) and prepare the dataset (if absent)."""
    manual = Path(config.data.manual_dir)
    if config.data.phantom_cases > 0 and not manual.exists():
        data.write_phantom(
            manual, config.data.phantom_cases, seed=config.seed, shape=tuple(config.data.phantom_shape)
        )
    settings = {
        "modalities": tuple(config.data.modalities),
        "split_seed": config.data.split_seed,
        "fractions": tuple(config.data.fractions),
    }
    path = data.dataset_path(config.data.data_dir, **settings)
    return path if path.exists() else data.prepare_dataset(manual, config.data.data_dir, **settings)


def batch_for(stage: str, src, config: ml_collections.ConfigDict, step: int) -> tuple[dict, ...]:
    """This process's rows of the host batch(es) for global step ``step``: ``(batch,)``, or
    ``(tr, val)`` for a bi-level step (``tr`` with K draws where
    ``bilevel.distinct_inner_batches``; :meth:`Trainer.inner_batches` stacks them)."""
    b = config.batch
    if stage == "bilevel":
        inner = config.bilevel.inner_steps if config.bilevel.distinct_inner_batches else 1
        tr, val = data.patient_split_batch(
            src, b.tr_size, b.val_size, seed=config.seed, step=step, inner=inner
        )
        return sharding.process_rows(tr), sharding.process_rows(val)
    return (sharding.process_rows(data.sample_batch(src, b.size, seed=config.seed, step=step)),)


def _scalars(metrics: dict) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


def _nan_message(stage: str, step: int, values: dict, checkpoints: Checkpoints, workdir: Path) -> str:
    bad = ", ".join(k for k, v in values.items() if not math.isfinite(v))
    saved = checkpoints.latest_step()
    where = (
        (
            f"the last good checkpoint is step {saved} in {checkpoints.directory}; resume from it "
            f"with `fuse4seg train --config <same config> --workdir {workdir} --resume` and, say, "
            f"a lower --config.optim.*_lr"
        )
        if saved is not None
        else "no checkpoint was saved yet"
    )
    return f"{stage} step {step}: non-finite {bad}; stopped. {where}"


def run_training(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    trainer: Trainer | None = None,
    verbose: bool = False,
    warn: Callable[[str], None] | None = None,
) -> dict:
    """Train as the config says, evaluate the result and write the report.

    Arguments:
        config: a locked config (``fuse4seg_jax.train.config.load_config``).
        workdir: the run directory (see ``fuse4seg_jax.train.rundir``).
        resume: continue the run in ``workdir`` from its latest checkpoint.
        overwrite: delete whatever run ``workdir`` holds first.
        progress: show a progress bar.
        stop_after: stop (checkpointed) after this global step, before the end and the evaluation,
            e.g. to fit a time-boxed job; continue later with ``resume``.
        trainer: a :class:`Trainer` built from ``config`` to reuse (its steps are compiled once
            per process, e.g. across the runs of a sweep); by default a new one.
        verbose: print the libraries' log messages (orbax, tfds, absl) on the terminal too; they
            always go to ``<workdir>/library.log``.
        warn: called with each of ``fuse4seg_jax.train.checks.config_warnings``' messages once the
            config has passed the checks (the ``train`` command prints them).

    Returns:
        the evaluation (``fuse4seg_jax.train.evaluation.evaluate``, or for ``data.kind =
        "paired"`` ``fuse4seg_jax.train.paired.evaluate_pairs``) plus ``tables``, the report's
        markdown tables.

    Raises:
        ConfigError: the config fails ``fuse4seg_jax.train.checks.validate_config``; nothing is
            written then.
        TrainingError: a loss became non-finite; the last good checkpoint is kept and the message
            says how to resume.
        ConfigError: another process is running in ``workdir`` (its process id is named).
        DataError: ``resume`` and every checkpoint of the run is damaged (a damaged newest one
            is moved aside and the run resumes from the newest intact one).
    """
    if config.mesh.distributed:  # first: the checks count the devices of every host
        jax.distributed.initialize()
    validate_config(config)
    # paired folders are read, and their errors raised, before the run folder is touched
    pairs = open_pairs(config) if config.data.kind == "paired" else None
    if config.stages.unit != "steps":  # epochs count the train split's slices (or pairs)
        train = pairs["train"] if pairs else data.open_split(ensure_dataset(config), "train")
        config = stages.in_steps(config, len(train))
    if warn is not None:
        for message in config_warnings(config):
            warn(message)
    with run_lock(workdir):
        workdir = open_run(workdir, config, resume=resume, overwrite=overwrite)
        with library_log(workdir / LIBRARY_LOG, verbose=verbose):
            return _train(
                config,
                workdir,
                resume=resume,
                progress=progress,
                stop_after=stop_after,
                trainer=trainer,
                pairs=pairs,
            )


def _train(config, workdir: Path, *, resume, progress, stop_after, trainer, pairs) -> dict:
    """:func:`run_training`'s work in an opened, locked run folder (``pairs``: :func:`open_pairs`'
    splits of a paired run, else None)."""
    if pairs is None:
        dataset = ensure_dataset(config)
        train_src = data.open_split(dataset, "train")
    else:
        train_src = pairs["train"]
    if trainer is None:
        mesh = sharding.make_mesh(config.mesh.data, config.mesh.model)
        trainer = Trainer(config, mesh, num_modalities=len(train_src.modalities))
    elif to_json(trainer.config) != to_json(config):
        raise ValueError("the trainer passed to run_training was built from another config")
    mesh = trainer.mesh
    checkpoints = Checkpoints(workdir / "checkpoints")
    restored = checkpoints.restore_latest_intact(trainer.abstract_state()) if resume else None
    state, start = restored if restored is not None else (trainer.init_state(), 0)
    log = MetricsLog(workdir / "metrics.jsonl", restored_step=start)
    total = trainer.plan.total if stop_after is None else min(stop_after, trainer.plan.total)
    bar = tqdm(total=total, initial=start, disable=not progress, desc="train", dynamic_ncols=True)
    monitor = monitor_for(trainer)
    try:
        for step in range(start, total):
            stage, within = trainer.plan.locate(step)
            batches = [sharding.put_batch(mesh, b) for b in batch_for(stage, train_src, config, step)]
            # before the step, which donates the state
            watched = stage == "bilevel" and monitor is not None and monitor.due(within)
            extra = monitor(state, *batches) if watched else {}
            state, metrics = trainer.steps[stage](state, *batches)
            metrics = {**metrics, **extra}
            last = step + 1 == total or step + 1 == trainer.plan.end_of(stage)
            log_now = (step + 1) % config.log_every == 0 or last or watched
            save_now = (step + 1) % config.checkpoint_every == 0 or last
            if log_now or save_now:  # never checkpoint a state whose loss we have not checked
                values = _scalars(metrics)
                if not all(math.isfinite(v) for v in values.values()):
                    raise TrainingError(_nan_message(stage, step + 1, values, checkpoints, workdir))
                log.write({"step": step + 1, "stage": stage, **values})
                bar.set_postfix({k: f"{values[k]:.4g}" for k in ("loss", "seg") if k in values})
            if save_now:
                checkpoints.save(step + 1, state)
            bar.update(1)
    finally:
        bar.close()
        log.close()
    checkpoints.close()
    if total < trainer.plan.total:
        return {
            "rows": [],
            "summary": {},
            "samples": [],
            "tables": f"stopped after step {total} of {trainer.plan.total}; continue with --resume",
        }
    if pairs is not None:
        result = evaluate_pairs(trainer, state, pairs[config.eval.split], max_cases=config.eval.max_cases)
        result["tables"] = write_pairs_report(workdir, config, result, gallery=config.eval.gallery)
        return result
    eval_src = data.open_split(dataset, config.eval.split)
    result = evaluate(trainer, state, eval_src, max_cases=config.eval.max_cases)
    shown = result["samples"][: config.eval.gallery]
    result["attention"] = (
        attention_maps(trainer, state, np.stack([s["image"] for s in shown])) if shown else None
    )
    result["tables"] = write_report(workdir, config, result, gallery=config.eval.gallery)
    return result
