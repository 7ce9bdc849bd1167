"""Fuse4Seg Table 3, Variant A: bi-level without L_decomp and L_grad (alpha = beta = 0).

The leader's upper objective is the validation segmentation loss and the reconstruction anchor.
`--config configs/table3_variant_a.py` starts from the paper settings; `:demo` from the demo.
"""

from fuse4seg_jax.train.defaults import baseline, config_for


def get_config(arg=None):
    return baseline(config_for(arg), "variant_a")
