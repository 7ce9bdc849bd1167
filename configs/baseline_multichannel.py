"""Multi-channel: the follower alone on the stacked modalities (no fused image).

Equal compute with the bi-level run it derives from. `--config configs/baseline_multichannel.py` starts
from the paper settings; `--config configs/baseline_multichannel.py:demo` from the demo.
"""

from fuse4seg_jax.train.defaults import baseline, config_for


def get_config(arg=None):
    return baseline(config_for(arg), "multichannel")
