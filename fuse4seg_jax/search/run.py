"""``run_search``: the search, its run folder and resume, the retraining rows and the report.

<workdir>/config.json, metrics.jsonl, checkpoints/, library.log, .lock   as a train run's
<workdir>/weights.json          the searched weights, {term: softmax(beta)_k} (search.weights)
<workdir>/weights.png           the weights' trajectories over the search
<workdir>/retrain_searched/     a train run of the config with loss.caf_weights = weights.json
<workdir>/retrain_<preset>/     one per search.compare preset, the same config and compute
<workdir>/report.md             top terms, the comparison table, links to the rows' reports
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
from fuse4seg_jax.losses.caf import caf_term_names
from fuse4seg_jax.search.batches import search_batches, search_pools
from fuse4seg_jax.search.config import validate_search_config, with_caf_weights
from fuse4seg_jax.search.report import write_search_report
from fuse4seg_jax.search.searcher import Searcher
from fuse4seg_jax.search.weights import write_weights
from fuse4seg_jax.train import sharding
from fuse4seg_jax.train.checkpoint import Checkpoints
from fuse4seg_jax.train.checks import config_warnings
from fuse4seg_jax.train.loop import ensure_dataset, run_training
from fuse4seg_jax.train.rundir import LIBRARY_LOG, MetricsLog, library_log, open_run, run_lock

WEIGHTS_FILE = "weights.json"


def run_search(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    searcher: Searcher | None = None,
    verbose: bool = False,
    warn: Callable[[str], None] | None = None,
) -> dict:
    """Search the CAF loss weights, retrain with them (and the compared presets), write the report.

    Arguments:
        config: a locked search config (``configs/caf_search.py``).
        workdir: the run folder (module docstring).
        resume: continue the search (and any retraining row) from its latest checkpoint.
        overwrite: delete whatever run ``workdir`` holds first.
        progress: show progress bars.
        stop_after: stop (checkpointed) after this search iteration, before the weights are
            written and anything is retrained; continue with ``resume``.
        searcher: a :class:`Searcher` of ``config`` to reuse (compiled once per process).
        verbose: show the libraries' log messages on the terminal.
        warn: called with each config warning.

    Returns:
        ``{"weights": {term: weight}, "rows": {row: evaluation}, "tables": markdown}``; rows and
        tables are empty when stopped early.

    Raises:
        ConfigError: the config fails the checks (nothing is written), or ``workdir`` is in use.
        TrainingError: a loss or weight became non-finite; the last good checkpoint is kept.
    """
    validate_search_config(config)
    if warn is not None:
        for message in config_warnings(config):
            warn(message)
    with run_lock(workdir):
        workdir = open_run(workdir, config, resume=resume, overwrite=overwrite)
        with library_log(workdir / LIBRARY_LOG, verbose=verbose):
            weights = _search(config, workdir, resume, progress, stop_after, searcher)
        if weights is None:
            return {"weights": {}, "rows": {}, "tables": f"stopped after search step {stop_after}"}
        specs = {"searched": str(workdir / WEIGHTS_FILE), **{p: p for p in config.search.compare}}
        rows = {
            name: run_training(
                with_caf_weights(config, spec),
                workdir / f"retrain_{name}",
                resume=resume,
                progress=progress,
                verbose=verbose,
            )
            for name, spec in specs.items()
        }
        tables = write_search_report(workdir, config, weights, rows)
    return {"weights": weights, "rows": rows, "tables": tables}


def _search(config, workdir: Path, resume: bool, progress: bool, stop_after, searcher) -> dict | None:
    """The search loop in an opened run folder; the weights, or ``None`` if stopped early."""
    train_src = data.open_split(ensure_dataset(config), "train")
    num_sources = len(train_src.modalities)
    if searcher is None:
        searcher = Searcher(config, sharding.make_mesh(config.mesh.data, config.mesh.model), num_sources)
    names = caf_term_names(num_sources)
    pools = search_pools(train_src, config.search.train_fraction, config.seed)
    sizes = (config.batch.tr_size, config.batch.val_size)
    checkpoints = Checkpoints(workdir / "checkpoints")
    restored = checkpoints.restore_latest_intact(searcher.abstract_state()) if resume else None
    state, start = restored if restored is not None else (searcher.init_state(), 0)
    log = MetricsLog(workdir / "metrics.jsonl", restored_step=start)
    warmup = config.search.warmup
    steps = warmup + config.search.steps
    total = steps if stop_after is None else min(stop_after, steps)
    bar = tqdm(total=total, initial=start, disable=not progress, desc="search", dynamic_ncols=True)
    try:
        for step in range(start, total):
            train_batch, search_batch = (
                sharding.put_batch(searcher.mesh, b)
                for b in search_batches(train_src, pools, sizes, seed=config.seed, step=step)
            )
            if step < warmup:
                state, metrics = searcher.warmup_step(state, train_batch)
            else:
                state, metrics = searcher.step(state, train_batch, search_batch)
            last = step + 1 == total
            save_now = (step + 1) % config.checkpoint_every == 0 or last
            if (step + 1) % config.log_every == 0 or save_now:
                values = _flat(jax.device_get(metrics), names)
                bad = [k for k, v in values.items() if not math.isfinite(v)]
                if bad:
                    saved = checkpoints.latest_step()
                    where = (
                        "no checkpoint was saved yet"
                        if saved is None
                        else f"the last good checkpoint is step {saved} in {checkpoints.directory}; resume "
                        f"with --resume and, say, a lower --config.search.beta_lr or search.fusion_lr"
                    )
                    raise TrainingError(
                        f"search step {step + 1}: non-finite {', '.join(bad)}; stopped. {where}"
                    )
                log.write({"step": step + 1, "stage": "warmup" if step < warmup else "search", **values})
                bar.set_postfix({k: f"{values[k]:.4g}" for k in ("search_loss", "task_loss") if k in values})
            if save_now:
                checkpoints.save(step + 1, state)
            bar.update(1)
    finally:
        bar.close()
        log.close()
    checkpoints.close()
    if total < steps:
        return None
    weights = np.asarray(jax.device_get(jax.nn.softmax(state["beta"])))
    write_weights(workdir / WEIGHTS_FILE, weights, num_sources)
    return dict(zip(names, (float(w) for w in weights), strict=True))


def _flat(metrics: dict, names: tuple[str, ...]) -> dict[str, float]:
    """Scalars as floats; the ``weights`` vector as ``weight.<term>``; ``failed`` as 0 / 1."""
    weights = metrics.pop("weights")
    values = {k: float(np.asarray(v)) for k, v in metrics.items()}
    return {**values, **{f"weight.{n}": float(w) for n, w in zip(names, weights, strict=True)}}
