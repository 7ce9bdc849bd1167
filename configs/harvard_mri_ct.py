"""Fuse4Seg's leader trained alone on Harvard MRI-CT pairs, scored with Table 2's metrics.

`--config configs/harvard_mri_ct.py` reads your pairs from data/harvard/mri-ct/{MRI,CT}/*.png
(set `--config.data.paired_dir`); `:demo` generates 40 synthetic pairs into
data/synthetic_mri-ct if absent and trains the demo's leader on them; `:smoke` runs in seconds.
See fuse4seg_jax/train/paired_configs.py.
"""

from fuse4seg_jax.train.paired_configs import paired_config


def get_config(arg=None):
    return paired_config("mri-ct", arg)
