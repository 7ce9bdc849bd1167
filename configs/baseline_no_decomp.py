"""Ablation: bi-level without the decomposition loss (alpha = 0).

Equal compute with the bi-level run it derives from. `--config configs/baseline_no_decomp.py` starts
from the paper settings; `--config configs/baseline_no_decomp.py:demo` from the demo.
"""

from fuse4seg_jax.train.defaults import baseline, config_for


def get_config(arg=None):
    return baseline(config_for(arg), "no_decomp")
