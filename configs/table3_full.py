"""Fuse4Seg Table 3, "Ours (Full)": bi-level with L_decomp and L_grad.

The paper settings (as configs/brats2021_t1ce_flair.py), or the demo with `:demo`; named for the
table so that `fuse4seg sweep` can rerun every row from one family of files.
"""

from fuse4seg_jax.train.defaults import config_for


def get_config(arg=None):
    return config_for(arg)
