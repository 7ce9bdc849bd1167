"""Every loss of Fuse4Seg, CAF and SMFNet as pure, jit-able JAX functions of arrays.

Images are float32 NHWC in ``[0, 1]``; each module's docstring states its conventions.
"""

from fuse4seg_jax.losses.adversarial import (
    GENERATOR_LOSSES,
    discriminator_loss,
    generator_loss_minimax,
    generator_loss_non_saturating,
)
from fuse4seg_jax.losses.caf import (
    CAF_TERM_NAMES,
    caf_loss,
    caf_term_names,
    caf_terms,
    caf_weighted_loss,
    caf_weights,
    init_caf_logits,
)
from fuse4seg_jax.losses.caf_features import fixed_conv_features
from fuse4seg_jax.losses.decomposition import (
    correlation_coefficient,
    decomposition_loss,
    pairwise_correlations,
)
from fuse4seg_jax.losses.encoder_pretraining import content_loss, encoder_loss
from fuse4seg_jax.losses.fusion_terms import fusion_term_weights, fusion_terms, register_fusion_term
from fuse4seg_jax.losses.gradient import gradient_loss, sobel_magnitude
from fuse4seg_jax.losses.reconstruction import max_intensity_loss, reconstruction_loss
from fuse4seg_jax.losses.saliency import saliency_masks, visual_saliency_map
from fuse4seg_jax.losses.segmentation import cross_entropy_loss, dice_ce_loss, soft_dice_loss
from fuse4seg_jax.losses.smfnet import (
    decomposition_loss_with_interaction,
    gram_intensity_loss,
    gram_matrix,
    grey_level_lovasz_loss,
    lovasz_softmax_loss,
)
from fuse4seg_jax.losses.ssim import ssim, ssim_loss

__all__ = [
    "CAF_TERM_NAMES",
    "GENERATOR_LOSSES",
    "caf_loss",
    "caf_weighted_loss",
    "caf_term_names",
    "caf_terms",
    "caf_weights",
    "content_loss",
    "correlation_coefficient",
    "cross_entropy_loss",
    "decomposition_loss",
    "decomposition_loss_with_interaction",
    "dice_ce_loss",
    "encoder_loss",
    "discriminator_loss",
    "generator_loss_minimax",
    "fixed_conv_features",
    "fusion_term_weights",
    "fusion_terms",
    "generator_loss_non_saturating",
    "gradient_loss",
    "gram_intensity_loss",
    "gram_matrix",
    "grey_level_lovasz_loss",
    "init_caf_logits",
    "lovasz_softmax_loss",
    "max_intensity_loss",
    "pairwise_correlations",
    "reconstruction_loss",
    "register_fusion_term",
    "saliency_masks",
    "soft_dice_loss",
    "sobel_magnitude",
    "ssim",
    "ssim_loss",
    "visual_saliency_map",
]
