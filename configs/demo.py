"""The README's main job: phantom data, small models, the full pipeline on 2 CPU cores.

Generates 12 phantom cases (64 x 64 x 32) into data/phantom if absent, prepares them, pre-trains
the leader as an autoencoder (30 steps), warms the follower up on the average prior (300 steps),
then runs the bi-level rollout (50 outer steps, first-order solver, K = 5, leader EMA m = 0.9).
Batches of 4 slices throughout, so that install + run fit in 10 minutes on 2 CPU cores.
"""

from fuse4seg_jax.train.defaults import demo_config


def get_config():
    return demo_config()
