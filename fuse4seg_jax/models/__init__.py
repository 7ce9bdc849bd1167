"""Fusion leaders, segmentation followers and discriminators behind one pure boundary.

Importing this package registers every model with its paper and demo sizes (:func:`sizes`); build
one with :func:`create`.
"""

from fuse4seg_jax.models import (
    caf_dense,  # noqa: F401  (registers its model)
    convnext_unet,  # noqa: F401  (registers its model)
    cross_attention,  # noqa: F401  (registers its model)
    discriminator,  # noqa: F401  (registers its model)
    frequency_decoupled,  # noqa: F401  (registers its model)
    fuse4seg_v1,  # noqa: F401  (registers its model)
    smfnet,  # noqa: F401  (registers its model)
)
from fuse4seg_jax.models.pure import Params, PureModel, count_params, split_module
from fuse4seg_jax.models.registry import (
    FAMILIES,
    PRESETS,
    RUNTIME_ARGUMENTS,
    build,
    create,
    has_method,
    names,
    register,
    sizes,
)

__all__ = [
    "FAMILIES",
    "PRESETS",
    "RUNTIME_ARGUMENTS",
    "Params",
    "PureModel",
    "build",
    "count_params",
    "create",
    "has_method",
    "names",
    "register",
    "sizes",
    "split_module",
]
