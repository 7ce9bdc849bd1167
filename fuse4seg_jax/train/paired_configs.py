"""Configs that train the fusion leader alone on image pairs (Harvard MRI-CT / PET / SPECT).

Fuse4Seg's Table 2 scores the fusion leader on Harvard pairs, which have no segmentation labels:
only the leader's stages run, its autoencoder pre-training (``stages.pretrain``, CDDFuse phase I)
and then the fusion terms of the upper objective alone (``stages.fusion``: alpha L_decomp +
beta L_grad + gamma L_recon, ``docs/conventions.md#losses``). Colour images are fused on their
BT.601 luma and get their colour back afterwards (``docs/conventions.md#labels-and-data``). The
pairs are split by name; the held-out split is scored for the trained leader and for the average
rule (``fuse4seg_jax.train.paired``).
"""

from __future__ import annotations

import ml_collections

from fuse4seg_jax.data.synthetic_pairs import folder_names
from fuse4seg_jax.train.defaults import base_config, demo_config, smoke_config

ARGUMENTS = ("paper", "demo", "smoke")


def paired_config(kind: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """The config of a pair kind.

    Arguments:
        kind: ``mri-ct``, ``mri-pet`` or ``mri-spect``; the modalities are its folder names
            (``MRI`` and ``CT`` / ``PET`` / ``SPECT``).
        arg: ``paper`` (default): the paper's leader, optimiser and batch on the user's pairs in
            ``data/harvard/<kind>``, 40 pre-training + 120 fusion epochs (ours: the paper gives
            no schedule for Table 2; these are its warm-up and rollout lengths). ``demo``: the
            demo's small leader on 40 synthetic 64 x 64 pairs generated into
            ``data/synthetic_<kind>`` if absent, 60 + 240 steps. ``smoke``: seconds, tiny leader,
            12 synthetic 48 x 48 pairs; its scores mean nothing.

    Raises:
        ValueError: ``arg`` is not one of :data:`ARGUMENTS`.
    """
    if arg in (None, ""):
        arg = "paper"
    if arg not in ARGUMENTS:
        raise ValueError(f"unknown config argument {arg!r}; expected one of {', '.join(ARGUMENTS)}")
    c = {"paper": base_config, "demo": demo_config, "smoke": smoke_config}[arg]()
    c.data.kind = "paired"
    c.data.modalities = folder_names(kind)
    c.data.fractions = (0.8, 0.0, 0.2)
    c.stages.follower = c.stages.bilevel = 0
    c.follower_input = c.eval_input = "fused"
    if arg == "paper":
        c.data.paired_dir = f"data/harvard/{kind}"
        c.stages.pretrain, c.stages.fusion = 40, 120
        return c
    c.data.paired_dir = f"data/{'smoke' if arg == 'smoke' else 'synthetic'}_{kind}"
    if arg == "demo":
        c.data.synthetic_pairs, c.data.synthetic_size = 40, 64
        c.stages.pretrain, c.stages.fusion = 60, 240
        # the evaluated leader is the EMA: its horizon, 1 / (1 - m) steps, short against 240
        c.bilevel.ema = 0.95
    else:
        c.data.synthetic_pairs, c.data.synthetic_size = 12, 48
        c.stages.pretrain, c.stages.fusion = 2, 2
        c.bilevel.ema = 0.0
        c.eval.max_cases = 2
    c.eval.gallery = 2
    return c
