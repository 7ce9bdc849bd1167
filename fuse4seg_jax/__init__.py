"""fuse4seg_jax: bi-level image fusion (leader) + segmentation (follower) for multi-modal MRI."""

__version__ = "0.1.0"
