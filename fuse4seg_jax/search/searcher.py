"""Everything one search needs to take steps: the two networks, the problem, optimisers, the jitted step."""

from __future__ import annotations

import functools

import jax
import ml_collections
import optax
from jax.sharding import Mesh

from fuse4seg_jax import models
from fuse4seg_jax.losses.caf import init_caf_logits
from fuse4seg_jax.search.problem import SearchProblem
from fuse4seg_jax.search.step import State, init_state, search_step, warmup_step
from fuse4seg_jax.train import sharding
from fuse4seg_jax.train.choices import model_arguments, solver_from_config
from fuse4seg_jax.train.objectives import Objectives
from fuse4seg_jax.train.optimizers import make_optimizer

FUSION_EPS_ROOT = 1e-12  # Adam's eps_root for the fusion network: its steps are differentiated


class Searcher:
    """Models, optimisers and the jitted search step for one search config and mesh.

    The fusion network is ``model.fusion`` (``caf_dense`` in the search configs), the task network
    ``model.segmentation`` on the fused image, its loss the follower's Dice + CE
    (``fuse4seg_jax.train.objectives.Objectives.inner_loss``). Beta starts at zeros (equal
    weights). Optimisers: ``optim.optimizer`` at ``search.task_lr`` and ``search.fusion_lr`` with
    ``optim.schedule`` over ``search.warmup + search.steps``; Adam at ``search.beta_lr`` decayed by
    ``search.beta_decay`` per step for beta.

    Arguments:
        config: a search config that passed ``validate_search_config``.
        mesh: the device mesh.
        num_modalities: N.
    """

    def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh, num_modalities: int):
        self.config = config
        self.mesh = mesh
        s, o = config.search, config.optim
        task_key, fusion_key = jax.random.split(jax.random.key(config.seed, impl="rbg"))
        fusion_model, fusion = models.create(
            "fusion", config.model.fusion, key=fusion_key, **model_arguments(config, "fusion", num_modalities)
        )
        task_model, task = models.create(
            "segmentation",
            config.model.segmentation,
            key=task_key,
            **model_arguments(config, "segmentation", num_modalities),
        )
        objectives = Objectives(
            fusion_model,
            task_model,
            fusion_weights=(),
            class_weights=tuple(config.loss.class_weights),
            compute_dtype=config.precision,
        )
        self.problem = SearchProblem(
            functools.partial(objectives.follower_view, "fused"), objectives.inner_loss
        )

        def optimizer(lr: float, eps_root: float = 0.0) -> optax.GradientTransformation:
            return make_optimizer(
                o.optimizer,
                lr,
                s.warmup + s.steps,
                weight_decay=o.weight_decay,
                schedule=o.schedule,
                eps_root=eps_root,
            )

        opts = {
            "task_opt": optimizer(s.task_lr),
            # sqrt's derivative at 0 is infinite: a dead ReLU's zero gradient made the
            # differentiated fusion step (and so beta's hypergradient) NaN at the first iteration
            "fusion_opt": optimizer(s.fusion_lr, eps_root=FUSION_EPS_ROOT),
            "beta_opt": optax.adam(optax.exponential_decay(s.beta_lr, 1, s.beta_decay)),
        }
        self._init = jax.device_get((task, fusion, init_caf_logits(num_modalities)))
        self._opts = opts
        abstract = jax.eval_shape(self._fresh_state)
        self.state_sharding = sharding.state_shardings(mesh, abstract, config.mesh.shard_params)
        step = functools.partial(
            search_step,
            problem=self.problem,
            solver=solver_from_config(config),
            inner_steps=config.bilevel.inner_steps,
            **opts,
        )
        out_shardings = (self.state_sharding, sharding.replicated(mesh))
        self.step = jax.jit(step, donate_argnums=0, out_shardings=out_shardings)
        warmup = functools.partial(
            warmup_step, problem=self.problem, task_opt=opts["task_opt"], fusion_opt=opts["fusion_opt"]
        )
        self.warmup_step = jax.jit(warmup, donate_argnums=0, out_shardings=out_shardings)

    def _fresh_state(self) -> State:
        return init_state(*self._init, **self._opts)

    def init_state(self) -> State:
        """A fresh search state placed on the mesh."""
        return jax.device_put(self._fresh_state(), self.state_sharding)

    def abstract_state(self) -> State:
        """Shapes, dtypes and shardings of the state (a checkpoint's restore target)."""
        return jax.tree.map(
            lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh),
            jax.eval_shape(self._fresh_state),
            self.state_sharding,
        )
