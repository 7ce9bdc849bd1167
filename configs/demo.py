"""The README's main job: phantom data, small models, the full pipeline on 2 CPU cores.

Generates 12 phantom cases (64 x 64 x 32) into data/phantom if absent, prepares them, warms the
follower up on the average prior, then runs the bi-level rollout (first-order solver, K = 5).
"""

from fuse4seg_jax.train.defaults import demo_config


def get_config():
    return demo_config()
