"""The exactness monitor: every M outer steps, how far the running solver is from a reference.

With ``bilevel.monitor.every = M > 0`` the training loop calls :class:`Monitor` before every M-th
bi-level step, on that step's state and batches: it computes the running solver's hypergradient
and the reference's (``bilevel.monitor.reference``, any solver spec, e.g. ``unrolled``), and the
follower's Hessian's extreme eigenvalues after the K inner steps (Lanczos,
``bilevel.monitor.lanczos`` steps), and returns them as metrics logged with that step:
``monitor_cosine``, ``monitor_rel_error``, ``monitor_smallest``, ``monitor_largest``. The step
itself is untouched; the monitor costs one more solver call, the reference's, and the Lanczos
products. See ``docs/solvers.md#the-exactness-monitor``.
"""

from __future__ import annotations

import jax
import ml_collections

import bilevel
from bilevel import tree
from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.train.trainer import State, Trainer

KEYS = ("monitor_cosine", "monitor_rel_error", "monitor_smallest", "monitor_largest")


def monitor_reference(config: ml_collections.ConfigDict) -> bilevel.Solver:
    """The solver ``bilevel.monitor.reference`` names.

    Raises:
        ConfigError: not one solver spec, or an unknown solver or option, naming the key.
    """
    spec = config.bilevel.monitor.reference
    try:
        return bilevel.solver_from_spec(spec)
    except bilevel.SolverConfigError as err:
        raise ConfigError(f"config key bilevel.monitor.reference: {err}") from None


class Monitor:
    """The running solver against the reference at a bi-level step's state (jitted once).

    Arguments:
        trainer: the run's trainer (problem, solver, follower optimiser, batch stacking).
    """

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.every = int(trainer.config.bilevel.monitor.every)
        self.reference = monitor_reference(trainer.config)
        self._measure = jax.jit(self._compute)

    def due(self, bilevel_step: int) -> bool:
        """Whether the bi-level step ``bilevel_step`` (0-based within the stage) is monitored."""
        return self.every > 0 and bilevel_step % self.every == 0

    def __call__(self, state: State, tr: dict, val: dict) -> dict[str, jax.Array]:
        """The monitor's metrics (:data:`KEYS`, scalars) at ``state`` on a bi-level step's batches."""
        return self._measure(state, tr, val)

    def _compute(self, state: State, tr: dict, val: dict) -> dict[str, jax.Array]:
        t = self.trainer
        args = (
            state["follower"],
            state["leader"],
            t.follower_opt,
            state["follower_opt"],
            t.inner_batches(tr),
            val,
        )
        problem = t.problem_for(state)
        running = t.solver(problem, *args)
        reference = self.reference(problem, *args).hypergrad
        est = bilevel.inner_hessian_extremes(
            problem,
            running.inner_params,
            state["leader"],
            jax.tree.map(lambda x: x[-1], args[4]),
            num_iter=int(t.config.bilevel.monitor.lanczos),
            key=jax.random.key(0),
            loop="while",
        )
        ref_norm = tree.norm(reference)
        return {
            "monitor_cosine": tree.cosine(running.hypergrad, reference),
            "monitor_rel_error": tree.norm(tree.sub(running.hypergrad, reference)) / ref_norm,
            "monitor_smallest": est.smallest,
            "monitor_largest": est.largest,
        }


def monitor_for(trainer: Trainer) -> Monitor | None:
    """A :class:`Monitor` where ``bilevel.monitor.every > 0`` and the run has a bi-level stage."""
    if trainer.config.bilevel.monitor.every > 0 and "bilevel" in trainer.plan:
        return Monitor(trainer)
    return None
