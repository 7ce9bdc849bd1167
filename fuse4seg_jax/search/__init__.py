"""CAF's loss-weight search (``fuse4seg search``): Algorithm 1 over any ``bilevel`` solver.

Modules, imported by their full names (so that ``fuse4seg_jax.train`` can read weights files
without importing the search loop, which imports the train loop):

    problem    the search as a ``bilevel.Problem``: fusion parameters inner, beta logits outer
    step       one iteration of Algorithm 1 as a pure function (task, fusion and beta updates)
    batches    the fixed 50/50 patient split of the train split into D_train and D_search
    weights    ``weights.json`` files and the comparison presets (uniform, cddfuse, random)
    config     the search configs' keys and checks
    searcher   models, optimisers and the jitted step for one config and mesh
    run        ``run_search``: run folder, checkpoints, resume, retraining, report
    report     the weights' trajectories plot and ``report.md``

See ``docs/caf_search.md``.
"""
