"""Fuse4Seg Table 3, "Baseline (Disjoint)": no bi-level, no L_decomp, no L_grad.

The leader is trained as an autoencoder (per modality 5 SSIM-loss + MSE, decomposition weight 0)
for its pre-training steps plus the rollout's leader steps, then frozen; the follower trains on its
fused images for as many updates as in the full run. `:demo` starts from the demo.
"""

from fuse4seg_jax.train.defaults import baseline, config_for


def get_config(arg=None):
    return baseline(config_for(arg), "autoencoder")
