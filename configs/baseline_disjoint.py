"""Disjoint pipeline: leader on fusion losses alone, then follower on its frozen output.

Equal compute with the bi-level run it derives from. `--config configs/baseline_disjoint.py` starts
from the paper settings; `--config configs/baseline_disjoint.py:demo` from the demo.
"""

from fuse4seg_jax.train.defaults import baseline, config_for


def get_config(arg=None):
    return baseline(config_for(arg), "disjoint")
