"""Fuse4Seg Table 3, Variant B: bi-level with L_decomp, without L_grad (beta = 0).

Equal compute with the full run it derives from. `--config configs/table3_variant_b.py` starts from
the paper settings; `--config configs/table3_variant_b.py:demo` from the demo.
"""

from fuse4seg_jax.train.defaults import baseline, config_for


def get_config(arg=None):
    return baseline(config_for(arg), "no_grad")
