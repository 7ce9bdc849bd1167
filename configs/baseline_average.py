"""Average prior: the follower alone on the mean of the modalities (Table 3, 'average').

Equal compute with the bi-level run it derives from. `--config configs/baseline_average.py` starts
from the paper settings; `--config configs/baseline_average.py:demo` from the demo.
"""

from fuse4seg_jax.train.defaults import baseline, config_for


def get_config(arg=None):
    return baseline(config_for(arg), "average")
