"""Fusion metrics: CDDFuse conventions, checked against independent references and hand values."""

import math

import numpy as np
import pytest
from scipy import ndimage
from sewar.full_ref import vifp
from skimage.metrics import structural_similarity
from sklearn.metrics import mutual_info_score

from fuse4seg_jax.errors import DataError
from fuse4seg_jax.metrics import (
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
    vif,
)


def _image(seed, size=64, smooth=1.5):
    noise = np.random.default_rng(seed).normal(128, 60, (size, size))
    return np.clip(np.round(ndimage.gaussian_filter(noise, smooth) * 3 - 256), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images():
    a, b = _image(0), _image(1)
    fused = ((a.astype(np.int32) + b) // 2).astype(np.uint8)
    return fused, np.stack([a, b])


def test_vif_is_the_sum_of_sewar_vifp_per_source(images):
    fused, sources = images
    expected = sum(vifp(s, fused) for s in sources)
    assert vif(fused, sources) == pytest.approx(expected, rel=1e-10)


def test_ssim_matches_scikit_image_with_the_8_bit_range(images):
    fused, sources = images
    f = fused.astype(np.float64)
    expected = sum(
        structural_similarity(f, s.astype(np.float64), win_size=7, data_range=255) for s in sources
    )
    assert ssim(fused, sources) == pytest.approx(expected, rel=1e-10)


def test_compat_ssim_is_the_evaluators_float32_call_with_data_range_2():
    # The CDDFuse evaluator feeds np.round'ed float32 grey levels 0..255 to scikit-image 0.19's
    # structural_similarity without a data range, which then uses the float range (-1, 1). The
    # installed version's defaults (window 7, K1, K2, sample covariance, crop, float64 mean) are
    # 0.19's, but it refuses float input without a data range, so the test passes 2.0.
    rng = np.random.default_rng(5)
    images = np.zeros((3, 16, 16), np.uint8)
    images[:, :, 8:] = 254 + rng.integers(0, 2, (3, 16, 8))  # nearly flat and bright
    images[:, :8, :8] = rng.integers(0, 256, (3, 8, 8))
    fused, sources = images[0], images[1:]
    as_read = images.astype(np.float32)
    expected = sum(structural_similarity(as_read[0], s, data_range=2.0) for s in as_read[1:])
    assert ssim(fused, sources, cddfuse_compat=True) == pytest.approx(expected, rel=1e-4)
    # float64 arithmetic would miss: these windows score by float32 rounding noise.
    in_float64 = sum(structural_similarity(*(images[[0, i]] * 1.0), data_range=2.0) for i in (1, 2))
    assert in_float64 != pytest.approx(expected, rel=1e-4)


def test_mi_matches_scikit_learn_in_nats(images):
    fused, sources = images
    expected = sum(mutual_info_score(fused.ravel(), s.ravel()) for s in sources)
    assert mutual_information(fused, sources) == pytest.approx(expected, rel=1e-10)


def test_entropy_of_equally_frequent_levels():
    assert entropy(np.array([[0, 255], [0, 255]], np.uint8)) == pytest.approx(1.0)
    assert entropy(np.array([[0, 1], [2, 3]], np.uint8)) == pytest.approx(2.0)
    assert entropy(np.full((3, 3), 7, np.uint8)) == 0.0


def test_sd_is_the_population_std():
    assert standard_deviation(np.array([[0, 100], [100, 0]], np.uint8)) == pytest.approx(50.0)


def test_sf_averages_over_the_differences_that_exist():
    # dx: 3, -4 -> mean 12.5; dy: 4, -3 -> mean 12.5; sqrt(25) = 5.
    assert spatial_frequency(np.array([[0, 3], [4, 0]], np.uint8)) == pytest.approx(5.0)


def test_ag_of_a_ramp():
    ramp = np.tile(np.arange(0, 20, 2, dtype=np.uint8), (6, 1))  # gx = 2 everywhere, gy = 0
    assert average_gradient(ramp) == pytest.approx(math.sqrt(2.0))


def test_scd_of_the_sum_of_the_sources_is_n():
    rng = np.random.default_rng(3)
    sources = rng.integers(0, 80, (3, 16, 16)).astype(np.uint8)
    assert scd(sources[:2].sum(axis=0).astype(np.uint8), sources[:2]) == pytest.approx(2.0)
    assert scd(sources.sum(axis=0).astype(np.uint8), sources) == pytest.approx(3.0)


def test_psnr_peak_255_or_max_of_fused():
    fused = np.full((4, 4), 10, np.uint8)
    sources = np.stack([fused, np.full((4, 4), 12, np.uint8)])  # MSEs 0 and 4, mean 2
    assert psnr(fused, sources) == pytest.approx(10 * math.log10(255**2 / 2))
    assert psnr(fused, sources, cddfuse_compat=True) == pytest.approx(10 * math.log10(100 / 2))
    assert psnr(fused, fused[None]) == math.inf


def _sobel_strength(image):
    image = image.astype(np.float64)
    gx = ndimage.sobel(image, axis=1, mode="constant")
    gy = ndimage.sobel(image, axis=0, mode="constant")
    return np.hypot(gx, gy)


def test_qabf_of_a_perfect_copy_and_the_cddfuse_tie_bug(images):
    fused, _ = images
    q_a = 0.9879 / (1 + math.exp(-22 * (1 - 0.8)))  # orientation preserved exactly
    q_g = 0.9994 / (1 + math.exp(-15 * (1 - 0.5)))  # strength ratio 1
    assert qabf(fused, fused[None]) == pytest.approx(q_g * q_a, rel=1e-12)
    # CDDFuse's evaluator uses the strength g itself as the "ratio" where strengths are equal.
    g = _sobel_strength(fused)
    tie = 0.9994 / (1 + np.exp(-15 * (g - 0.5))) * q_a
    expected = np.sum(tie * g) / np.sum(g)
    assert qabf(fused, fused[None], cddfuse_compat=True) == pytest.approx(expected, rel=1e-12)


def test_fusion_scores_order_and_float_input_convention(images):
    fused, sources = images
    scores = fusion_scores(fused, sources)
    assert list(scores) == ["EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "AG", "SSIM", "PSNR"]
    assert scores["Qabf"] == qabf(fused, sources)
    as_float = fusion_scores(fused / np.float32(255), sources / np.float32(255))
    assert as_float == scores  # float in [0, 1] is read as round(x * 255)


def test_out_of_range_images_are_data_errors(images):
    fused, sources = images
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        fusion_scores(fused.astype(np.float32), sources)
    with pytest.raises(DataError, match="do not match"):
        fusion_scores(fused[:-1], sources)
