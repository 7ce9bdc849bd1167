"""The full set of config keys, with the Fuse4Seg paper's settings as values.

Every file in ``configs/`` starts from :func:`base_config` and changes what it needs, so all
experiments share one schema and ``--config.key=value`` overrides are checked against it.

Three parts of the schema come from registries, as they are when the config is built: the sizes
of every registered model (``model.<family>_sizes.<name>.<size>``, from ``fuse4seg_jax.models``),
the options of every registered solver (``bilevel.options.<solver>.<option>``, from
``bilevel.solver_options``) and the weight of every fusion term of the upper objective
(``loss.weights.<term>``, from ``fuse4seg_jax.losses.fusion_term_weights``). A model, solver or
term registered before the config is built (in a config file, say) is therefore configurable like
the built-in ones.
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder

import bilevel
from fuse4seg_jax import losses, models
from fuse4seg_jax.train.optimizers import PARAMETER_SETS


def _model_sizes(preset: str) -> dict[str, ml_collections.ConfigDict]:
    """``{"<family>_sizes": {name: sizes}}`` for every registered model at ``preset`` (paper | demo)."""
    return {
        f"{family}_sizes": ml_collections.ConfigDict(
            {name: models.sizes(family, name, preset) for name in models.names(family)}
        )
        for family in models.FAMILIES
    }


def base_config() -> ml_collections.ConfigDict:
    """Fuse4Seg (current version) on BraTS 2021, T1ce + FLAIR, paper hyper-parameters."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.manual_dir = "data/BraTS2021"  # case folders; read with fuse4seg_jax.data.discover_cases
    c.data.data_dir = "data/prepared"  # where `prepare` writes the ArrayRecord dataset
    c.data.modalities = ("t1ce", "flair")
    c.data.split_seed = 0
    c.data.fractions = (0.7, 0.1, 0.2)
    c.data.phantom_cases = 0  # > 0: generate this many phantom cases into manual_dir if it is absent
    c.data.phantom_shape = (96, 96, 64)
    # brats: the slices `prepare` makes of manual_dir; paired: image pairs for training the leader
    # alone (fuse4seg_jax.data.pair_source): paired_dir holds one PNG folder per data.modalities
    c.data.kind = "brats"
    c.data.paired_dir = ""
    c.data.synthetic_pairs = 0  # paired: > 0: generate this many synthetic pairs into paired_dir if absent
    c.data.synthetic_size = 256  # their side in pixels (the Harvard atlas's)

    c.model = ml_collections.ConfigDict()
    c.model.fusion = "frequency_decoupled"  # the leader; its sizes: model.fusion_sizes.<name>
    c.model.segmentation = "convnext_unet"  # the follower; model.segmentation_sizes.<name>
    c.model.num_classes = 4
    c.model.discriminator = "fuse4seg_v1"  # one per modality, used when loss.adversarial > 0
    c.model.update(_model_sizes("paper"))

    # Stages run in this order; a stage with 0 steps is skipped. Kinds:
    #   pretrain  leader as an autoencoder (5 SSIM + MSE + 2 decomposition), CDDFuse phase I;
    #             with loss.adversarial > 0 also a GAN game per modality (Fuse4Seg v1); skipped
    #             (with a warning) for a leader without an autoencode pass
    #   fusion    leader on the fusion terms of the upper objective alone (disjoint baseline)
    #   follower  follower alone on `follower_input` with the leader frozen (Fuse4Seg warm-up)
    #   bilevel   the asymmetric rollout: K follower steps, one leader hypergradient step, EMA
    c.stages = ml_collections.ConfigDict()
    c.stages.pretrain = 0
    c.stages.fusion = 0
    c.stages.follower = 40  # the paper's 40 warm-up epochs
    c.stages.bilevel = 120  # and 120 rollout epochs
    # steps | epochs: what the numbers above count. An epoch is one pass over the prepared train
    # split (ceil(slices / batch.size) steps; bi-level: ceil(slices / batch.tr_size) outer steps),
    # converted to steps when the run starts (config.json records the steps).
    c.stages.unit = "epochs"
    c.follower_input = "average"  # warm-up prior: average | fused | stacked
    c.eval_input = "fused"  # what the follower sees at evaluation: fused | average | stacked

    c.bilevel = ml_collections.ConfigDict()
    c.bilevel.solver = "first_order"  # any of bilevel.solver_names()
    # Each solver's own options with their defaults (meanings: the solver classes in bilevel);
    # only the chosen solver's are read.
    c.bilevel.options = ml_collections.ConfigDict(
        {name: bilevel.solver_options(name) for name in bilevel.solver_names()}
    )
    c.bilevel.inner_steps = 5  # K
    # False: the K inner steps reuse one D_tr batch (Algorithm 1 as written); True: K batches
    # drawn from the D_tr patients, one per inner step (batch.tr_size slices each)
    c.bilevel.distinct_inner_batches = False
    # The exactness monitor (fuse4seg_jax.train.monitor): every `every` outer steps (0: never) log
    # the running solver's cosine and relative error to `reference` (a solver spec) and the
    # follower Hessian's extreme eigenvalues (`lanczos` Lanczos steps) to metrics.jsonl
    c.bilevel.monitor = ml_collections.ConfigDict({"every": 0, "reference": "unrolled", "lanczos": 20})
    c.bilevel.ema = 0.99  # m

    c.loss = ml_collections.ConfigDict()
    # One weight per registered fusion term of the upper objective (losses/fusion_terms.py):
    # the paper's alpha (decomp), beta (grad) and gamma (recon) are 1, 5 and 0.05.
    c.loss.weights = ml_collections.ConfigDict(losses.fusion_term_weights())
    # CAF's loss space on the fused image, added to the fusion terms: '' (none), a preset (uniform,
    # cddfuse, random) or the path of a weights.json that `fuse4seg search` wrote
    # (fuse4seg_jax/search/weights.py, docs/caf_search.md).
    c.loss.caf_weights = ""
    c.loss.class_weights = (0.1, 1.0, 1.0, 1.0)  # background, NCR, ED, ET in the Dice term
    # Fuse4Seg v1 adversarial pre-training: weight (lambda, eq. 9) of the generator term; > 0 trains
    # one discriminator per modality against the leader's reconstructions during `pretrain`.
    c.loss.adversarial = 0.0
    # v1's adversarial term in the fusion stages (upper objective, fusion-only stage): weight of
    # sum_i G(D_i(fused)), the discriminators frozen after the adversarial pre-training (so it needs
    # loss.adversarial > 0 and a pretrain stage); 0: off
    c.loss.fusion_adversarial = 0.0
    c.loss.generator_form = "minimax"  # minimax: v1 eq. 10's log(1 - D) | non_saturating: -log D
    c.loss.pretrain_decomp = 2.0  # weight of L_decomp in the leader's pre-training (CDDFuse phase I)
    # The leader's pre-training loss: cddfuse (per modality 5 SSIM-loss + MSE, plus pretrain_decomp
    # L_decomp) | fuse4seg_v1 (v1 eq. 9: sigma L_decomp + (1 - sigma) eq. 12's content loss, per
    # modality MSE + 1 - SSIM; with loss.adversarial = lambda > 0, eq. 9's adversarial term too)
    # | smfnet (SMFNet's stage I, eq. 17-19: fuse4seg_jax/train/smfnet_objectives.py). For smfnet,
    # `roles` gives each modality (data.modalities order) its SMFNet role: visible (Lovasz term)
    # or infrared (Gram term); ssim, grad, visible_grad are alpha_3, beta_1, alpha_2 and
    # pretrain_decomp is alpha_1.
    c.loss.pretrain_objective = "cddfuse"
    c.loss.pretrain_sigma = 0.5  # v1 eq. 9's sigma (the paper does not give its value: ours)
    c.loss.smfnet = ml_collections.ConfigDict(
        {"roles": ("visible", "infrared"), "ssim": 8.0, "grad": 10.0, "visible_grad": 5.0}
    )

    c.optim = ml_collections.ConfigDict()
    c.optim.optimizer = "adamw"  # adamw | sgd (momentum 0.9): every parameter set unless it sets its own
    c.optim.leader_lr = 1e-4
    c.optim.follower_lr = 3e-4
    c.optim.pretrain_lr = 1e-4
    c.optim.discriminator_lr = 1e-4
    c.optim.weight_decay = 1e-5
    c.optim.clip_norm = 0.0  # 0: no clipping
    c.optim.schedule = "cosine"  # cosine | constant | step
    # Each parameter set's own optimiser (fuse4seg_jax.train.optimizers.optimizer_settings): the
    # leader (fusion), the follower (segmentation), the leader's pre-training and the
    # discriminators. Its learning rate is optim.<set>_lr above; None (unset) inherits:
    #   name          optim.optimizer                     adamw | sgd
    #   schedule      optim.schedule                      cosine | constant | step
    #   weight_decay  optim.weight_decay (leader, follower), 0 (pretrain, discriminator)
    # and, used by sgd / the step schedule only:
    #   momentum      0.9    SGD's heavy-ball momentum
    #   decay_rate    0.5    step schedule: the rate is multiplied by decay_rate ...
    #   decay_every   0      ... every decay_every updates of this set, counted in stages.unit
    #                        (epochs of the set's stage: pretrain for pretrain and discriminator,
    #                        follower for the follower, bilevel, else fusion, for the leader)
    for parameter_set in PARAMETER_SETS:
        c.optim[parameter_set] = ml_collections.ConfigDict(
            {
                "name": placeholder(str),
                "schedule": placeholder(str),
                "weight_decay": placeholder(float),
                "momentum": 0.9,
                "decay_rate": 0.5,
                "decay_every": 0,
            }
        )

    c.batch = ml_collections.ConfigDict()
    c.batch.size = 8  # global batch of the single-level stages
    c.batch.tr_size = 8  # D_tr slices per inner step
    c.batch.val_size = 8  # D_val slices per outer step
    c.batch.accumulation = 1  # micro-batches per batch (gradient accumulation)

    c.precision = "float32"  # float32 | bfloat16 (compute only; parameters stay float32)

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # devices on the data axis; -1: all
    c.mesh.model = 1
    c.mesh.shard_params = False  # FSDP-style: shard parameters and optimiser state over `data`
    c.mesh.distributed = False  # call jax.distributed.initialize() (multi-host; reads the env)

    c.log_every = 10
    c.checkpoint_every = 200
    c.eval = ml_collections.ConfigDict()
    c.eval.split = "test"
    c.eval.max_cases = 0  # 0: all
    c.eval.gallery = 4  # slices shown in the PNG gallery
    return c


def demo_config() -> ml_collections.ConfigDict:
    """Small models on generated phantom data: the whole pipeline in minutes on 2 CPU cores."""
    c = base_config()
    c.data.manual_dir = "data/phantom"
    c.data.data_dir = "data/phantom_prepared"
    c.data.phantom_cases = 12
    c.data.phantom_shape = (64, 64, 32)
    c.data.fractions = (0.5, 0.17, 0.33)
    c.model.update(_model_sizes("demo"))
    c.stages.unit = "steps"
    c.stages.pretrain = 30
    c.stages.follower = 300
    c.stages.bilevel = 50
    # The EMA's horizon, 1 / (1 - m) outer steps, must be short against the rollout: with the
    # paper's m = 0.99 over 50 steps the evaluated leader would still be 60 % the pre-trained one
    # (0.99^50), not the leader the follower was trained against.
    c.bilevel.ema = 0.9
    # Every solver's loops compiled once, not traced out: the K follower steps as one lax.scan,
    # a linear solve's iterations as one while_loop. Same values, to rounding. On 2 CPU cores
    # (benchmarks/train_step.py, 7 interleaved steps) the first-order step compiles in 26 s
    # instead of 48 s and runs in 0.45 s against 0.53 s; implicit CG-10 in 93 s instead of 509 s,
    # 1.54 s against 1.51 s a step; unrolled in 85 s instead of 302 s, 2.77 s against 2.28 s, a
    # gain over any run shorter than about 440 outer steps (docs/solvers.md#xlacpu-performance-facts).
    for options in c.bilevel.options.values():
        if "scan_inner" in options:
            options.scan_inner = True
        if "solve_loop" in options:
            options.solve_loop = "while"
    c.optim.pretrain_lr = 1e-3
    c.optim.leader_lr = 3e-4
    c.optim.follower_lr = 2e-3
    c.batch.size = 4
    c.batch.tr_size = 4
    c.batch.val_size = 4
    c.log_every = 10
    c.checkpoint_every = 100
    return c


def smoke_config() -> ml_collections.ConfigDict:
    """The demo shrunk to a run of seconds (after compilation): every stage kind, tiny nets.

    For checking an install or a change end to end, and what the tests and ``benchmarks/``
    kill-and-resume script run. Slices are 48 x 48 (the fusion scores' VIF needs at least 41
    pixels a side); the default leader and follower shrink further than their demo sizes, the
    other models keep them; solvers with a linear solve stop after 2 iterations.
    """
    c = demo_config()
    c.data.manual_dir = "data/smoke_phantom"
    c.data.data_dir = "data/smoke_prepared"
    c.data.phantom_cases = 6
    c.data.phantom_shape = (48, 48, 16)
    c.model.fusion_sizes.frequency_decoupled.update({"dim": 8, "heads": 1})
    c.model.segmentation_sizes.convnext_unet.update(
        {"widths": (8, 16), "depths": (1, 1), "bottleneck_heads": 1, "kernel_size": 3}
    )
    c.stages.pretrain, c.stages.follower, c.stages.bilevel = 2, 2, 2
    c.bilevel.inner_steps = 2
    for options in c.bilevel.options.values():
        if "max_iter" in options:
            options.max_iter = 2
    c.batch.size = c.batch.tr_size = c.batch.val_size = 8
    c.mesh.data = 1
    c.log_every = 1
    c.checkpoint_every = 2
    c.eval.max_cases = 1
    c.eval.gallery = 1
    return c


def study_config(root: str, *, warmup: int = 300, outer_steps: int = 10) -> ml_collections.ConfigDict:
    """The smoke config's nets and phantom data as the convergence notebooks study them.

    No leader pre-training (its compilation would dominate), ``warmup`` follower steps on the
    average prior, then ``outer_steps`` bi-level steps with K = 2, batches of 4 slices, one
    device, float32. The learning rates are constant: with the cosine schedule the follower's
    would be near zero by the end of the warm-up, and every outer step would leave it in place.

    Arguments:
        root: folder of the phantom cases and the prepared data set (made if absent).
        warmup: follower warm-up steps.
        outer_steps: the bi-level stage's length.

    Returns:
        The config.
    """
    c = smoke_config()
    c.data.manual_dir = f"{root}/phantom"
    c.data.data_dir = f"{root}/prepared"
    c.stages.pretrain, c.stages.follower, c.stages.bilevel = 0, warmup, outer_steps
    c.batch.size = c.batch.tr_size = c.batch.val_size = 4
    c.optim.schedule = "constant"
    return c


def baseline(c: ml_collections.ConfigDict, kind: str) -> ml_collections.ConfigDict:
    """Turn a Fuse4Seg config into one of the paper's Table 3 baselines at equal compute.

    Equal compute means the follower takes as many updates as in the bi-level run
    (warm-up + K per outer step) and the leader as many as its outer steps. Baselines without a
    fused image skip the leader's pre-training too.

    Kinds:
        average        follower alone on the mean of the modalities (the warm-up prior, kept)
        disjoint       leader on the fusion terms alone, then follower on its frozen output
        multichannel   follower alone on the stacked modalities (no fusion image)
        no_decomp      bi-level without L_decomp (alpha = loss.weights.decomp = 0)
        no_grad        bi-level without L_grad (beta = 0): Table 3's Variant B
        variant_a      bi-level without L_decomp and L_grad: Table 3's Variant A
        autoencoder    Table 3's disjoint baseline: the leader pre-trained as an autoencoder
                       without L_decomp (its pre-training takes the rollout's leader steps too),
                       then the follower on its frozen output
    """
    follower_updates = c.stages.follower + c.bilevel.inner_steps * c.stages.bilevel
    if kind in ("average", "multichannel"):
        c.stages.pretrain, c.stages.follower, c.stages.bilevel = 0, follower_updates, 0  # no leader
        c.follower_input = c.eval_input = "average" if kind == "average" else "stacked"
    elif kind == "disjoint":
        c.stages.fusion, c.stages.bilevel = c.stages.bilevel, 0
        c.stages.follower = follower_updates
        c.follower_input = c.eval_input = "fused"
    elif kind == "autoencoder":
        c.stages.pretrain, c.stages.bilevel = c.stages.pretrain + c.stages.bilevel, 0
        c.stages.follower = follower_updates
        c.follower_input = c.eval_input = "fused"
        c.loss.pretrain_decomp = 0.0
        c.loss.weights.decomp = c.loss.weights.grad = 0.0  # unused without a leader stage on them
    elif kind == "variant_a":
        c.loss.weights.decomp = c.loss.weights.grad = 0.0
    elif kind == "no_decomp":
        c.loss.weights.decomp = 0.0
    elif kind == "no_grad":
        c.loss.weights.grad = 0.0
    else:
        raise ValueError(f"unknown baseline {kind!r}")
    return c


def config_for(arg: str | None) -> ml_collections.ConfigDict:
    """The starting config of a baseline file: ``demo`` or the paper settings (default)."""
    if arg in (None, "", "paper"):
        return base_config()
    if arg == "demo":
        return demo_config()
    raise ValueError(f"unknown config argument {arg!r}; expected 'demo' or 'paper'")
