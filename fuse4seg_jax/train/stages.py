"""The order of a run's stages and where a global step falls among them."""

from __future__ import annotations

import dataclasses

import ml_collections

from fuse4seg_jax import models

STAGES = ("pretrain", "fusion", "follower", "bilevel")


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
