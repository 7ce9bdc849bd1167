"""The CAF search with its ablation rows: searched weights against uniform, hand-made
(CDDFuse-like) and random weights, each retrained at the same compute, in one report table.

`fuse4seg search --config configs/caf_compare.py:demo` (or `:paper`, `:smoke`).
"""

from fuse4seg_jax.search.config import search_config


def get_config(arg="paper"):
    c = search_config(arg)
    c.search.compare = ("uniform", "cddfuse", "random")
    return c
