"""SMFNet's stage I objective: each modality reconstructed through the leader's ``autoencode`` pass.

SMFNet eq. 17-19 (``docs/conventions.md#smfnet``), for N modalities, each with a role:

    L^1 = sum_n [alpha_3 (1 - SSIM(S_n, R_n)) + beta_1 L_grad(S_n, R_n) + L_role(S_n, R_n)]
          + alpha_1 L_decomp^1 + alpha_2 sum_{n visible} L_grad(S_n, R_n)

with ``S_n`` the source, ``R_n`` its reconstruction, ``L_grad(S, R) = mean | |grad S| - |grad R| |``
(Sobel), ``L_role`` the grey-level Lovasz loss for a ``visible`` modality (eq. 18, 21-25) and the
Gram intensity loss for an ``infrared`` one (eq. 19-20), ``L_decomp^1`` eq. 26 on the base and
detail features. The paper's weights: alpha_1 2, alpha_2 5, alpha_3 8, beta_1 10.

Eq. 17 adds ``alpha_2 L_grad`` to two reconstruction losses that hold a gradient term already and
does not say on which image. SMFNet's stage I is CDDFuse's phase I with new terms, and CDDFuse's
phase I has, with the same weights 2 and 5, a decomposition term and a gradient term on the visible
image and its reconstruction; we read ``alpha_2 L_grad`` as that term. SMFNet's stage II is the
``fusion`` stage on the registered fusion terms (``fuse4seg_jax.losses.fusion_terms``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections

from fuse4seg_jax import losses
from fuse4seg_jax.errors import ConfigError

ROLES = ("visible", "infrared")
_WEIGHTS = ("ssim", "grad", "visible_grad")


@dataclasses.dataclass(frozen=True)
class SMFNetStageOne:
    """SMFNet's stage-I loss (module docstring); hashable, so it can sit in ``Objectives``.

    Attributes:
        roles: one of :data:`ROLES` per modality, in the channel order of the images.
        ssim: alpha_3, the weight of ``1 - SSIM`` per modality.
        grad: beta_1, the weight of each modality's reconstruction gradient loss.
        decomp: alpha_1, the weight of ``L_decomp^1`` (eq. 26).
        visible_grad: alpha_2, the weight of the visible modalities' gradient loss once more.
    """

    roles: tuple[str, ...]
    ssim: float = 8.0
    grad: float = 10.0
    decomp: float = 2.0
    visible_grad: float = 5.0

    def terms(self, rec: dict[str, jax.Array], images: jax.Array) -> dict[str, jax.Array]:
        """The unweighted terms, each summed over the modalities it applies to.

        Arguments:
            rec: the ``autoencode`` pass: ``images (N, B, H, W, 1)``, ``low`` and ``high``
                ``(N, B, H, W, C)``.
            images: ``(B, H, W, N)`` sources in [0, 1], ``H, W >= 11`` (the SSIM window).

        Returns:
            scalars ``ssim`` (sum of ``1 - SSIM``), ``grad``, ``lovasz`` (visible modalities),
            ``gram`` (infrared modalities), ``visible_grad`` and ``decomp``.
        """
        zero = jnp.zeros((), rec["images"].dtype)
        terms = dict.fromkeys(("ssim", "grad", "lovasz", "gram", "visible_grad"), zero)
        sources = jnp.moveaxis(images, -1, 0)[..., None].astype(zero.dtype)
        for role, source, reconstruction in zip(self.roles, sources, rec["images"], strict=True):
            grad = losses.gradient_loss(reconstruction, source)
            # ssim_loss is (1 - SSIM) / 2; SMFNet's L_SSIM is 1 - SSIM
            terms["ssim"] = terms["ssim"] + 2.0 * losses.ssim_loss(reconstruction, source)
            terms["grad"] = terms["grad"] + grad
            if role == "visible":
                terms["lovasz"] = terms["lovasz"] + losses.grey_level_lovasz_loss(source, reconstruction)
                terms["visible_grad"] = terms["visible_grad"] + grad
            else:
                terms["gram"] = terms["gram"] + losses.gram_intensity_loss(source, reconstruction)
        terms["decomp"] = losses.decomposition_loss(rec["low"], rec["high"])
        return terms

    def __call__(
        self, rec: dict[str, jax.Array], images: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """``(L^1, terms)``: eq. 17 with this object's weights, and :meth:`terms`."""
        t = self.terms(rec, images)
        loss = (
            self.ssim * t["ssim"]
            + self.grad * t["grad"]
            + t["lovasz"]
            + t["gram"]
            + self.decomp * t["decomp"]
            + self.visible_grad * t["visible_grad"]
        )
        return loss, t


def stage_one_from_config(config: ml_collections.ConfigDict) -> SMFNetStageOne | None:
    """SMFNet's stage-I loss when ``loss.pretrain_objective`` is ``smfnet``, else None.

    Reads ``loss.smfnet.{roles, ssim, grad, visible_grad}`` and ``loss.pretrain_decomp`` (alpha_1).

    Raises:
        ConfigError: roles that are not one of :data:`ROLES` per modality of
            ``data.modalities``, a negative or non-finite weight, or ``loss.adversarial > 0`` (the
            adversarial pre-training is not built for SMFNet's stage I), naming the key.
    """
    if config.loss.pretrain_objective != "smfnet":
        return None
    if config.loss.adversarial > 0:
        raise ConfigError(
            f"config key loss.adversarial = {config.loss.adversarial!r} with loss.pretrain_objective = "
            f"'smfnet'; expected 0: the adversarial pre-training is built for the cddfuse and "
            f"fuse4seg_v1 objectives"
        )
    s = config.loss.smfnet
    roles, modalities = tuple(s.roles), tuple(config.data.modalities)
    if len(roles) != len(modalities) or any(r not in ROLES for r in roles):
        raise ConfigError(
            f"config key loss.smfnet.roles = {roles!r}; expected one of {', '.join(ROLES)} for each of "
            f"the {len(modalities)} modalities {modalities}"
        )
    for key in _WEIGHTS:
        if not (math.isfinite(s[key]) and s[key] >= 0):
            raise ConfigError(f"config key loss.smfnet.{key} = {s[key]!r}; expected a finite number >= 0")
    weights = {key: float(s[key]) for key in _WEIGHTS}
    return SMFNetStageOne(roles, decomp=float(config.loss.pretrain_decomp), **weights)
