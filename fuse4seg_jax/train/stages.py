"""The order of a run's stages and where a global step falls among them."""

from __future__ import annotations

import copy
import dataclasses
import math

import ml_collections

from fuse4seg_jax import models
from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.train.optimizers import PARAMETER_SETS

STAGES = ("pretrain", "fusion", "follower", "bilevel")
UNITS = ("steps", "epochs")


def epoch_steps(config: ml_collections.ConfigDict, kind: str, train_slices: int) -> int:
    """Steps of one epoch of stage ``kind``: one pass over the train split's ``train_slices``.

    A single-level step draws ``batch.size`` slices; an outer step of the bi-level stage draws
    ``batch.tr_size`` slices of D_tr for its K inner steps (its D_val batch is drawn besides), so
    its epoch is ``ceil(train_slices / batch.tr_size)`` outer steps. With ``tr_size == size``
    every stage's epoch is the same number of steps, so the baselines' equal-compute arithmetic
    (``fuse4seg_jax.train.defaults.baseline``) holds in epochs as in steps.
    """
    per_step = config.batch.tr_size if kind == "bilevel" else config.batch.size
    return math.ceil(train_slices / per_step)


def in_steps(config: ml_collections.ConfigDict, train_slices: int) -> ml_collections.ConfigDict:
    """``config`` with its stage lengths in steps (a copy if ``stages.unit`` is ``"epochs"``).

    Arguments:
        config: a valid config.
        train_slices: the slice count of the prepared data set's train split.

    Returns:
        ``config`` itself for ``stages.unit = "steps"``; otherwise a copy whose ``stages.<kind>``
        is ``epochs * epoch_steps(...)``, whose step schedules' ``optim.<set>.decay_every`` is
        converted with the epoch of the set's stage (:func:`optimizer_stage`), and whose
        ``stages.unit`` is ``"steps"``.
    """
    if config.stages.unit == "steps":
        return config
    converted = copy.deepcopy(config)
    for kind in STAGES:
        converted.stages[kind] = int(config.stages[kind]) * epoch_steps(config, kind, train_slices)
    for parameter_set in PARAMETER_SETS:
        epoch = epoch_steps(config, optimizer_stage(config, parameter_set), train_slices)
        converted.optim[parameter_set].decay_every = int(config.optim[parameter_set].decay_every) * epoch
    converted.stages.unit = "steps"
    return converted


def optimizer_stage(config: ml_collections.ConfigDict, parameter_set: str) -> str:
    """The stage whose epoch measures ``parameter_set``'s updates (its ``decay_every`` in epochs):
    ``pretrain`` for the pre-training sets, ``follower`` for the follower, and for the leader
    ``bilevel`` (one update per outer step), or ``fusion`` in a run without a bi-level stage."""
    if parameter_set == "leader":
        return "bilevel" if config.stages.bilevel > 0 else "fusion"
    return "follower" if parameter_set == "follower" else "pretrain"


def leader_can_pretrain(config: ml_collections.ConfigDict) -> bool:
    """Whether the configured leader has the ``autoencode`` pass the pretrain stage trains."""
    return models.has_method("fusion", config.model.fusion, "autoencode")


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """The stages of a run in order, as ``(kind, steps)``.

    Zero-step stages are dropped, and so is ``pretrain`` for a leader that cannot pre-train
    (:func:`leader_can_pretrain`; ``fuse4seg_jax.train.checks.config_warnings`` says so).
    """

    stages: tuple[tuple[str, int], ...]

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> StagePlan:
        """The plan of a config whose stage lengths are in steps (see :func:`in_steps`).

        Raises:
            ConfigError: ``stages.unit`` is not ``"steps"``.
        """
        if config.stages.unit != "steps":
            raise ConfigError(
                f"config key stages.unit = {config.stages.unit!r}: stage lengths in epochs become steps "
                "only against a prepared data set (fuse4seg_jax.train.stages.in_steps)"
            )
        runs = {k: int(config.stages[k]) > 0 for k in STAGES}
        runs["pretrain"] = runs["pretrain"] and leader_can_pretrain(config)
        return cls(tuple((k, int(config.stages[k])) for k in STAGES if runs[k]))

    def __contains__(self, kind: str) -> bool:
        return any(k == kind for k, _ in self.stages)

    @property
    def total(self) -> int:
        return sum(n for _, n in self.stages)

    def locate(self, step: int) -> tuple[str, int]:
        """``(stage kind, step within that stage)`` of global step ``step``."""
        start = 0
        for kind, n in self.stages:
            if step < start + n:
                return kind, step - start
            start += n
        raise IndexError(f"step {step} is past the last stage ({self.total} steps)")

    def end_of(self, kind: str) -> int:
        """Global step at which stage ``kind`` ends (0 if it does not run)."""
        end = 0
        for k, n in self.stages:
            end += n
            if k == kind:
                return end
        return 0
