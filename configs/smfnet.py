"""SMFNet's two-stage training, then a segmentation follower on its frozen fused images.

SMFNet ("A Semantic-Aware and Multi-Guided Network for Infrared-Visible Image Fusion") trains its
fusion network in two stages and evaluates downstream tasks on the fused images; here:

1. ``pretrain`` = stage I (eq. 17-19): each modality reconstructed through the encoder and
   decoder (``loss.pretrain_objective = "smfnet"``): per modality 8 (1 - SSIM) + 10 L_grad + the
   Lovasz term (visible role) or the Gram term (infrared role), plus 2 L_decomp (eq. 26) and
   5 L_grad of the visible modality.
2. ``fusion`` = stage II (eq. 28-30): the fused image on ``intensity`` (eq. 29) + 10 ``decomp``
   (eq. 27, with the graph's interaction features) + 2 ``grad`` (eq. 30).
3. ``follower``: the segmentation net on the frozen fused images, then evaluation (segmentation
   and fusion scores).

We have no infrared-visible data, so it runs on BraTS (T1ce + FLAIR): T1ce takes the visible role
(anatomical detail) and FLAIR the infrared one (the salient, bright lesion), ``loss.smfnet.roles``.
Paper settings: Adam, lr 1e-4, no weight decay, batch 6, 40 + 80 epochs. Departures: whole
224 x 224 slices instead of 128 x 128 patches; a constant learning rate (the paper names only the
initial one); no EMA of the leader (SMFNet has none); the follower is ours (Dice + CE, 300 epochs,
the length of SMFNet's segmentation experiment) and trains, as SMFNet's segmentation network
does, with SGD at 1e-2 (``optim.follower.*``; momentum 0.9 and weight decay 0 are ours, the paper
gives neither). Every departure: ``docs/conventions.md#smfnet``.

`:demo` runs it on the phantom: the leader at demo sizes but 8 channels, 30 + 30 leader steps at
Adam 1e-3, then 550 follower steps at Adam 2e-3 with the cosine schedule, as many follower updates
as ``configs/baseline_average.py:demo`` takes on the average prior, so the two reports compare the
fused image with that prior (timings and scores: ``docs/conventions.md#smfnet``). `:smoke` is the
tiny run the tests use.
"""

from fuse4seg_jax.train.defaults import config_for, smoke_config

SMOKE_SIZES = {"dim": 4, "heads": 2, "graph_factors": (1, 2), "graph_steps": 1}


def get_config(arg="paper"):
    c = smoke_config() if arg == "smoke" else config_for(arg)
    c.model.fusion = "smfnet"
    c.loss.pretrain_objective = "smfnet"
    c.loss.smfnet.roles = ("visible", "infrared")
    c.loss.pretrain_decomp = 2.0  # alpha_1
    c.loss.weights.update({"intensity": 1.0, "decomp": 10.0, "grad": 2.0, "recon": 0.0})  # alpha_4, alpha_5
    c.bilevel.ema = 0.0
    c.follower_input = c.eval_input = "fused"
    c.optim.optimizer = "adamw"
    c.optim.weight_decay = 0.0
    c.optim.schedule = "constant"
    if arg == "smoke":
        c.model.fusion_sizes.smfnet.update(SMOKE_SIZES)
        c.stages.pretrain, c.stages.fusion, c.stages.follower, c.stages.bilevel = 2, 2, 2, 0
    elif arg == "demo":
        c.model.fusion_sizes.smfnet.dim = 8  # halves the leader's step time; compilation barely changes
        c.stages.pretrain, c.stages.fusion, c.stages.follower, c.stages.bilevel = 30, 30, 550, 0
        c.optim.pretrain_lr = c.optim.leader_lr = 1e-3
        c.optim.follower.schedule = "cosine"
    else:
        c.stages.pretrain, c.stages.fusion, c.stages.follower, c.stages.bilevel = 40, 80, 300, 0
        c.optim.pretrain_lr = c.optim.leader_lr = 1e-4
        c.optim.follower.name, c.optim.follower_lr = "sgd", 1e-2
        c.batch.size = 6
    return c
