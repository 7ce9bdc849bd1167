"""Segmentation and fusion metrics with the field's conventions (``docs/conventions.md#metrics``)."""

from fuse4seg_jax.metrics.fusion import (
    average_gradient,
    entropy,
    fusion_scores,
    mutual_information,
    psnr,
    qabf,
    scd,
    spatial_frequency,
    ssim,
    standard_deviation,
    to_grey_levels,
    vif,
)
from fuse4seg_jax.metrics.score_files import write_scores
from fuse4seg_jax.metrics.segmentation import (
    REGIONS,
    confusion_counts,
    overlap_scores,
    segmentation_scores,
)
from fuse4seg_jax.metrics.summary import column_statistics, segmentation_row, summarise
from fuse4seg_jax.metrics.surface import (
    HD95_ONE_EMPTY_MM,
    bounding_box,
    hd95_mm,
    surface_distances_mm,
    surface_mask,
)

__all__ = [
    "HD95_ONE_EMPTY_MM",
    "REGIONS",
    "average_gradient",
    "bounding_box",
    "column_statistics",
    "confusion_counts",
    "entropy",
    "fusion_scores",
    "hd95_mm",
    "mutual_information",
    "overlap_scores",
    "psnr",
    "qabf",
    "scd",
    "segmentation_row",
    "segmentation_scores",
    "spatial_frequency",
    "ssim",
    "standard_deviation",
    "summarise",
    "surface_distances_mm",
    "surface_mask",
    "to_grey_levels",
    "vif",
    "write_scores",
]
