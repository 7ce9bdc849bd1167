"""Fuse4Seg (current version) on BraTS 2021, T1ce + FLAIR, with the paper's settings.

AdamW (wd 1e-5), lr 1e-4 leader / 3e-4 follower, cosine, batch 8, 224 x 224, K = 5,
alpha 1, beta 5, gamma 0.05, EMA 0.99, 40 warm-up + 120 rollout epochs (``stages.unit = "epochs"``:
converted to steps from the prepared train split's slice count when the run starts). Run
``fuse4seg prepare`` first.
"""

from fuse4seg_jax.train.defaults import base_config


def get_config():
    return base_config()
