"""Models, objectives, optimisers and the jitted step of every stage, for one config and mesh.

The train state is a plain dict of pytrees (as in big_vision):

    step        int32 scalar, global step over all stages
    leader      fusion parameters            follower      segmentation parameters
    ema         EMA of the leader (m = bilevel.ema), used for evaluation and inference
    leader_opt / follower_opt / pretrain_opt   optax states
    discriminators / discriminator_opt         only with adversarial pre-training: the N
                                               discriminators' parameters stacked on axis 0
                                               (after it, frozen: loss.fusion_adversarial's judges)
    solver      only with a solver that carries state between outer steps (a non-empty
                ``init_state``: a warm-started solve's solution, a follower copy and its optimiser
                state): shaped like the follower, so sharded by the same rule; checkpointed too

Every step function is pure, jitted once with the state's shardings and donated buffers, and runs
entirely on the devices: the K inner follower steps, the hypergradient's linear solve and the EMA
included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

import bilevel
from fuse4seg_jax import models
from fuse4seg_jax.search.weights import resolve_caf_weights
from fuse4seg_jax.train import sharding
from fuse4seg_jax.train.choices import model_arguments, solver_from_config
from fuse4seg_jax.train.objectives import Objectives, microbatched
from fuse4seg_jax.train.optimizers import optimizer_for
from fuse4seg_jax.train.smfnet_objectives import stage_one_from_config
from fuse4seg_jax.train.stages import StagePlan

State = dict[str, Any]


class Trainer:
    """Everything one run needs to take steps: models, objectives, optimisers, jitted steps.

    Arguments:
        config: a config from ``configs/`` (see ``fuse4seg_jax.train.defaults``), valid as
            ``fuse4seg_jax.train.checks.validate_config`` checks (the trainer does not check it).
        mesh: the device mesh (``fuse4seg_jax.train.sharding.make_mesh``).
        num_modalities: N, the channel count of the input images.
    """

    def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh, num_modalities: int):
        self.config = config
        self.mesh = mesh
        self.plan = StagePlan.from_config(config)
        # RBG keys: eager NNX initialisation compiles one small program per parameter shape, and
        # RBG's programs compile about twice as fast as threefry's on CPU.
        root = jax.random.key(config.seed, impl="rbg")
        leader_key, follower_key = jax.random.split(root)

        def create(family: str, key: jax.Array) -> tuple[models.PureModel, models.Params]:
            arguments = model_arguments(config, family, num_modalities)
            return models.create(family, config.model[family], key=key, **arguments)

        self.fusion, leader = create("fusion", leader_key)
        self.segmentation, follower = create("segmentation", follower_key)
        self.adversarial = config.loss.adversarial > 0 and "pretrain" in self.plan
        self.discriminator, discriminators = None, None
        if self.adversarial:
            created = [
                create("discriminator", k)
                for k in jax.random.split(jax.random.fold_in(root, 2), num_modalities)
            ]
            self.discriminator = created[0][0]
            discriminators = jax.tree.map(lambda *x: jnp.stack(x), *(p for _, p in created))
        # kept on the host: every init_state() then places new device buffers, which the donating
        # steps may consume without touching the initial parameters
        self._init_params = jax.device_get((leader, follower, discriminators))
        self.objectives = Objectives(
            self.fusion,
            self.segmentation,
            fusion_weights=tuple(config.loss.weights.to_dict().items()),
            class_weights=tuple(config.loss.class_weights),
            follower_input=config.follower_input,
            compute_dtype=config.precision,
            discriminator=self.discriminator,
            adversarial=config.loss.adversarial,
            generator_form=config.loss.generator_form,
            pretrain_decomp=config.loss.pretrain_decomp,
            pretrain_objective=config.loss.pretrain_objective,
            pretrain_sigma=config.loss.pretrain_sigma,
            fusion_adversarial=config.loss.fusion_adversarial,
            caf_weights=resolve_caf_weights(config.loss.caf_weights, num_modalities, config.seed),
            smfnet_stage_one=stage_one_from_config(config),
        )
        micro = int(config.batch.accumulation)
        obj = self.objectives
        self.solver = solver_from_config(config)
        # v1's eq. 6 weighs the fusion loss alone against the follower's loss (docs/solvers.md#joint)
        self._outer_loss = obj.joint_outer_loss if isinstance(self.solver, bilevel.Joint) else obj.outer_loss
        self.problem = bilevel.Problem(
            microbatched(obj.inner_loss, micro), microbatched(self._outer_loss, micro), has_aux=True
        )
        inner_updates = config.stages.follower + config.bilevel.inner_steps * config.stages.bilevel
        self.follower_opt = optimizer_for(config, "follower", inner_updates)
        self.leader_opt = optimizer_for(config, "leader", config.stages.fusion + config.stages.bilevel)
        self.pretrain_opt = optimizer_for(config, "pretrain", config.stages.pretrain)
        self.discriminator_opt = optimizer_for(config, "discriminator", config.stages.pretrain)
        abstract = jax.eval_shape(self._fresh_state)
        self.state_sharding = sharding.state_shardings(mesh, abstract, config.mesh.shard_params)
        replicated = sharding.replicated(mesh)
        jit = lambda fn: jax.jit(  # noqa: E731
            fn, donate_argnums=0, out_shardings=(self.state_sharding, replicated)
        )
        self.steps: dict[str, Callable[..., tuple[State, dict]]] = {
            "pretrain": jit(
                self._adversarial_pretrain(microbatched(obj.adversarial_pretrain_loss, micro))
                if self.adversarial
                else self._single_level(
                    microbatched(obj.pretrain_loss, micro), "leader", "pretrain_opt", self.pretrain_opt
                )
            ),
            "fusion": jit(
                self._single_level(
                    microbatched(obj.fusion_only_loss, micro),
                    "leader",
                    "leader_opt",
                    self.leader_opt,
                    # the frozen discriminators of v1's adversarial fusion term (the follower is unused)
                    other_key="discriminators" if config.loss.fusion_adversarial > 0 else "follower",
                )
            ),
            "follower": jit(
                self._single_level(
                    microbatched(obj.follower_loss, micro), "follower", "follower_opt", self.follower_opt
                )
            ),
            "bilevel": jit(self._bilevel_step),
        }
        self.predict = jax.jit(self._predict)

    def _fresh_state(self) -> State:
        leader, follower, discriminators = self._init_params
        state = {
            "step": jnp.zeros((), jnp.int32),
            "leader": leader,
            "follower": follower,
            "ema": jax.tree.map(jnp.copy, leader),  # its own buffers: the state is donated
            "leader_opt": self.leader_opt.init(leader),
            "follower_opt": self.follower_opt.init(follower),
            "pretrain_opt": self.pretrain_opt.init(leader),
        }
        solver_state = self.solver.init_state(follower, leader, self.follower_opt)
        if jax.tree.leaves(solver_state):  # stateless solvers keep the state (and checkpoints) as before
            state["solver"] = solver_state
        if self.adversarial:
            state["discriminators"] = discriminators
            state["discriminator_opt"] = self.discriminator_opt.init(discriminators)
        return state

    def init_state(self) -> State:
        """A fresh state placed on the mesh with the configured shardings."""
        return jax.device_put(self._fresh_state(), self.state_sharding)

    def abstract_state(self) -> State:
        """Shapes, dtypes and shardings of the state (the restore target of a checkpoint)."""
        return jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            jax.eval_shape(self._fresh_state),
            self.state_sharding,
        )

    @staticmethod
    def _ema(ema: Any, leader: Any, m: float) -> Any:
        # computed even for m = 0, so that the EMA never shares the leader's (donated) buffers
        return jax.tree.map(lambda e, p: m * e + (1.0 - m) * p, ema, leader)

    def _single_level(
        self,
        loss_fn,
        param_key: str,
        opt_key: str,
        opt: optax.GradientTransformation,
        other_key: str | None = None,
    ):
        """A step of one parameter set on ``loss_fn(params, other, batch)``, the other held fixed
        (by default the EMA leader for the follower, the follower for the leader)."""
        other_key = other_key or ("ema" if param_key == "follower" else "follower")

        def step(state: State, batch: dict) -> tuple[State, dict]:
            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                state[param_key], state[other_key], batch
            )
            updates, opt_state = opt.update(grads, state[opt_key], state[param_key])
            new = dict(state, step=state["step"] + 1, **{opt_key: opt_state})
            new[param_key] = optax.apply_updates(state[param_key], updates)
            if param_key == "leader":
                # pre-training sets the EMA to the leader (m = 0): Algorithm 1 starts it there.
                m = 0.0 if opt_key == "pretrain_opt" else self.config.bilevel.ema
                new["ema"] = self._ema(state["ema"], new["leader"], m)
            return new, {"loss": loss, **aux, "grad_norm": optax.tree.norm(grads)}

        return step

    def _adversarial_pretrain(self, loss_fn):
        """Fuse4Seg v1 pre-training step: leader and discriminators updated simultaneously from
        one gradient of ``Objectives.adversarial_pretrain_loss`` (each player's own objective)."""

        def step(state: State, batch: dict) -> tuple[State, dict]:
            (_, aux), (g_leader, g_disc) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
                state["leader"], state["discriminators"], batch
            )
            new = dict(state, step=state["step"] + 1)
            for key, opt_key, opt, grads in (
                ("leader", "pretrain_opt", self.pretrain_opt, g_leader),
                ("discriminators", "discriminator_opt", self.discriminator_opt, g_disc),
            ):
                updates, new[opt_key] = opt.update(grads, state[opt_key], state[key])
                new[key] = optax.apply_updates(state[key], updates)
            new["ema"] = self._ema(state["ema"], new["leader"], 0.0)
            metrics = {"loss": aux.pop("leader_loss"), **aux, "grad_norm": optax.tree.norm(g_leader)}
            return new, {**metrics, "discriminator_grad_norm": optax.tree.norm(g_disc)}

        return step

    def problem_for(self, state: State) -> bilevel.Problem:
        """The bi-level problem at ``state``: :attr:`problem`, or with ``loss.fusion_adversarial > 0``
        the same problem whose outer loss closes over ``state``'s frozen discriminators."""
        if self.config.loss.fusion_adversarial == 0:
            return self.problem
        judges = state["discriminators"]
        outer = microbatched(
            lambda follower, leader, batch: self._outer_loss(follower, leader, batch, judges),
            int(self.config.batch.accumulation),
        )
        return bilevel.Problem(self.problem.inner_loss, outer, has_aux=True)

    def inner_batches(self, tr: dict) -> dict:
        """The K inner batches ``(K, B, ...)`` of a bi-level step from its D_tr rows: K copies of
        ``tr`` (Algorithm 1 as written), or with ``bilevel.distinct_inner_batches`` the K draws
        that ``fuse4seg_jax.data.patient_split_batch`` interleaved sample-major."""
        k = self.config.bilevel.inner_steps
        if self.config.bilevel.distinct_inner_batches:
            # sample-major rows keep the split along the batch axis: no data moves between devices
            return jax.tree.map(lambda x: jnp.moveaxis(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 1, 0), tr)
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (k, *x.shape)), tr)

    def _bilevel_step(self, state: State, tr: dict, val: dict) -> tuple[State, dict]:
        """Algorithm 1's rollout: K follower steps on D_tr, one leader step on L_upper over D_val."""
        inner_batches = self.inner_batches(tr)
        bstate = bilevel.BilevelState(
            inner_params=state["follower"],
            outer_params=state["leader"],
            inner_opt_state=state["follower_opt"],
            outer_opt_state=state["leader_opt"],
            step=state["step"],
            solver_state=state.get("solver", ()),
        )
        bstate, diag = bilevel.step(
            bstate,
            inner_batches,
            val,
            problem=self.problem_for(state),
            solver=self.solver,
            inner_opt=self.follower_opt,
            outer_opt=self.leader_opt,
        )
        new = dict(
            state,
            step=state["step"] + 1,
            follower=bstate.inner_params,
            leader=bstate.outer_params,
            follower_opt=bstate.inner_opt_state,
            leader_opt=bstate.outer_opt_state,
            ema=self._ema(state["ema"], bstate.outer_params, self.config.bilevel.ema),
        )
        if "solver" in state:
            new["solver"] = bstate.solver_state
        outer_terms = diag.pop("outer_aux")  # seg on D_val, decomp, grad, recon
        diag.pop("inner_aux")  # its seg loss is diag["inner_loss"]
        return new, {"loss": diag["outer_loss"], **diag, **outer_terms}

    def _predict(self, leader: Any, follower: Any, images: jax.Array) -> dict[str, jax.Array]:
        """Inference on ``images (B, H, W, N)``: the follower's view and its class map ``(B, H, W)``."""
        view = self.objectives.follower_view(self.config.eval_input, leader, images)
        logits = self.objectives.segment(follower, view)
        return {"view": view, "pred": jnp.argmax(logits, axis=-1).astype(jnp.int32)}
