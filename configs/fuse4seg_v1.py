"""Fuse4Seg v1 ("Image-Level Fusion Based Multi-Modality Medical Image Segmentation") from a config.

The pipeline: the `fuse4seg_v1` leader's decomposition encoder and decoder pre-trained with one
discriminator per modality (eq. 9-12: lambda L_adv + sigma L_correlation + (1 - sigma) L_content),
then the cross-attention fusion (eq. 8) and the segmentation network trained together on eq. 6,
L_seg + lambda_f L_fuse (the `joint` solver), L_fuse being eq. 13's gradient term (L_text);
eq. 10's adversarial term on the fused image is `--config.loss.fusion_adversarial=W` (off). The
paper's settings: Adam 1e-4 halved every 20 epochs for the encoder-decoder and the
discriminators, 80 pre-training and 140 fusion epochs, SGD (lr 0.01, momentum 0.9, weight decay
1e-4) for the segmentation network, batch 16, 224 x 224; T1 (the query, M1) + FLAIR. Where the
paper gives no value (lambda, sigma, lambda_f) the choice is ours: docs/conventions.md#fuse4seg-v1.

`--config configs/fuse4seg_v1.py` (paper, BraTS 2021 in data/BraTS2021), `:demo` (phantom data,
small models; its time and scores: docs/conventions.md#fuse4seg-v1), `:smoke` (tiny, seconds after
compilation: the tests).
"""

from fuse4seg_jax.train.defaults import base_config, demo_config, smoke_config


def v1_settings(c):
    """Fuse4Seg v1's pipeline and training settings on top of a Fuse4Seg config ``c``."""
    c.data.modalities = ("t1", "flair")
    c.model.fusion = "fuse4seg_v1"
    c.loss.pretrain_objective = "fuse4seg_v1"
    c.loss.pretrain_sigma = 0.5
    c.loss.adversarial = 0.1  # eq. 9's lambda
    # eq. 6-7: L_seg + lambda_f L_fuse in one objective; L_fuse is eq. 13's gradient term. The
    # fusion stage's adversarial term (eq. 10 on the fused image, loss.fusion_adversarial) stays
    # off: against frozen discriminators the leader learnt to fool them with a blank image in the
    # demo (docs/conventions.md#fuse4seg-v1)
    c.loss.fusion_adversarial = 0.0
    c.bilevel.solver = "joint"
    c.bilevel.options.joint.weight = 1.0  # lambda_f
    c.bilevel.inner_steps = 1  # one follower step per leader step: a plain simultaneous descent
    c.loss.weights.update({"decomp": 0.0, "grad": 1.0, "recon": 0.0})
    c.bilevel.ema = 0.0  # v1 keeps no average of the leader: evaluate the leader as trained
    c.follower_input = c.eval_input = "fused"
    c.stages.follower = 0  # the segmentation network trains only in the cooperative stage
    for parameter_set in ("pretrain", "discriminator", "leader"):
        c.optim[parameter_set].update(
            {"name": "adamw", "weight_decay": 0.0, "schedule": "step", "decay_rate": 0.5, "decay_every": 20}
        )
    c.optim.follower.update({"name": "sgd", "momentum": 0.9, "weight_decay": 1e-4, "schedule": "constant"})
    c.optim.pretrain_lr = c.optim.discriminator_lr = c.optim.leader_lr = 1e-4
    c.optim.follower_lr = 0.01
    return c


def get_config(arg="paper"):
    if arg == "paper":
        c = v1_settings(base_config())
        c.stages.pretrain, c.stages.bilevel = 80, 140  # epochs
        c.batch.size = c.batch.tr_size = c.batch.val_size = 16
        return c
    if arg == "demo":
        c = v1_settings(demo_config())
        c.stages.pretrain, c.stages.bilevel = 60, 300  # steps, each halving the rate 4 times
        c.optim.pretrain.decay_every = c.optim.discriminator.decay_every = 15
        c.optim.leader.decay_every = 75
        c.optim.pretrain_lr = c.optim.discriminator_lr = c.optim.leader_lr = 1e-3
        c.optim.follower_lr = 0.05
        return c
    if arg == "smoke":
        c = v1_settings(smoke_config())
        c.model.fusion_sizes.fuse4seg_v1.update({"dim": 8, "heads": 1})
        c.stages.pretrain, c.stages.bilevel = 2, 2
        for parameter_set in ("pretrain", "discriminator", "leader"):
            c.optim[parameter_set].decay_every = 1
        return c
    raise ValueError(f"unknown config argument {arg!r}; expected 'paper', 'demo' or 'smoke'")
