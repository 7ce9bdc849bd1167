"""CAF's loss-weight search (Algorithm 1), then retraining with the searched loss, then evaluation.

`fuse4seg search --config configs/caf_search.py` runs CAF's settings on BraTS (finite-difference
hypergradient, K = 1, beta by Adam 5e-2 decayed 0.998 per step, fusion Adam 1e-4, train patients
split 50/50 into D_train and D_search); `:demo` on phantom data in minutes on 2 CPU cores;
`:smoke` in seconds (tests). The same file is a `fuse4seg train` config retraining with
`loss.caf_weights` (uniform unless set): the comparison rows at equal compute.
"""

from fuse4seg_jax.search.config import search_config


def get_config(arg="paper"):
    return search_config(arg)
