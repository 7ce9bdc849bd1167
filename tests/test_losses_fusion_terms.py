"""The upper objective's fusion terms come from one registry: a new term is one function and one line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fuse4seg_jax import losses, models
from fuse4seg_jax.train.config import load_config
from fuse4seg_jax.train.objectives import Objectives


def _brightness(out, images):
    """A term a user might add: how far the fused image's mean is from 0.5."""
    return (jnp.mean(out["fused"]) - 0.5) ** 2


if "brightness" not in losses.fusion_term_weights():
    losses.register_fusion_term("brightness", _brightness, weight=0.0)


def test_the_paper_weights_are_the_defaults_and_every_term_is_a_config_key():
    weights = load_config("configs/brats2021_t1ce_flair.py").loss.weights.to_dict()
    assert {k: weights[k] for k in ("decomp", "grad", "recon")} == {"decomp": 1.0, "grad": 5.0, "recon": 0.05}
    assert weights["brightness"] == 0.0  # registered above, before the config was built
    with pytest.raises(ValueError, match="registered already"):
        losses.register_fusion_term("grad", _brightness, weight=1.0)


def test_a_registered_term_enters_the_upper_objective_with_its_weight():
    fusion, leader = models.create("fusion", "caf_dense", key=jax.random.key(0), num_modalities=2)
    demo = models.sizes("segmentation", "convnext_unet", "demo")
    segmentation, _ = models.create(
        "segmentation", "convnext_unet", key=jax.random.key(1), in_channels=1, **demo
    )
    images = jax.random.uniform(jax.random.key(2), (1, 16, 16, 2))
    batch = {"image": images, "label": jnp.zeros((1, 16, 16), jnp.int32)}
    paper = (("decomp", 1.0), ("grad", 5.0), ("recon", 0.05))
    loss = {}
    for w in (0.0, 3.0):
        objectives = Objectives(fusion, segmentation, fusion_weights=(*paper, ("brightness", w)))
        loss[w], terms = objectives.fusion_only_loss(leader, None, batch)
    assert set(terms) == {"decomp", "grad", "recon", "brightness"}
    assert float(terms["decomp"]) == 0.0  # caf_dense has no frequency-decoupled features
    expected = _brightness(fusion.apply(leader, images), images)
    np.testing.assert_allclose(float(terms["brightness"]), float(expected), rtol=1e-6)
    np.testing.assert_allclose(float(loss[3.0]), float(loss[0.0]) + 3.0 * float(expected), rtol=1e-6)
    assert float(loss[3.0]) > float(loss[0.0])
