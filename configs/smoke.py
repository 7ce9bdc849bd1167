"""A seconds-long run of the whole pipeline on tiny phantom data, to check an install or a change.

6 phantom cases of 48 x 48 x 16 generated into data/smoke_phantom if absent, tiny nets, 2 steps of
each stage (leader pre-training, follower warm-up, bi-level rollout with K = 2), evaluation on one
case. Its numbers mean nothing; that every stage runs and writes its outputs does. The tests run it.
"""

from fuse4seg_jax.train.defaults import smoke_config


def get_config():
    return smoke_config()
