"""Command-line verbs, one module each (see ``fuse4seg_jax.cli``)."""
