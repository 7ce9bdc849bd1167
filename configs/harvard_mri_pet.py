"""Fuse4Seg's leader trained alone on Harvard MRI-PET pairs, scored with Table 2's metrics.

`--config configs/harvard_mri_pet.py` reads your pairs from data/harvard/mri-pet/{MRI,PET}/*.png
(set `--config.data.paired_dir`); `:demo` generates 40 synthetic pairs into
data/synthetic_mri-pet if absent and trains the demo's leader on them; `:smoke` runs in seconds.
See fuse4seg_jax/train/paired_configs.py.
"""

from fuse4seg_jax.train.paired_configs import paired_config


def get_config(arg=None):
    return paired_config("mri-pet", arg)
