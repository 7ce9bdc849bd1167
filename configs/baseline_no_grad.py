"""Ablation: bi-level without the spatial-gradient loss (beta = 0).

Equal compute with the bi-level run it derives from. `--config configs/baseline_no_grad.py` starts
from the paper settings; `--config configs/baseline_no_grad.py:demo` from the demo.
"""

from fuse4seg_jax.train.defaults import baseline, config_for


def get_config(arg=None):
    return baseline(config_for(arg), "no_grad")
