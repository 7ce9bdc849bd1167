"""Image-fusion quality metrics on 8-bit images, following the CDDFuse evaluator's conventions.

All metrics work on grey levels in [0, 255] (``docs/conventions.md#metrics``). :func:`to_grey_levels`
accepts an integer image with values in 0..255, or a float image in [0, 1] that it converts as
``round(x * 255)``; either way the metrics compute in float64.

A fused image ``(H, W)`` is scored against its N sources ``(N, H, W)``. Metrics of the fused image
alone (EN, SD, SF, AG) ignore the sources. Metrics that compare with the sources are the **sums over
sources** of the pairwise value (MI, VIF, SSIM; SCD generalised as described there), except Qabf,
which is one gradient-weighted average over all sources, and PSNR, which averages the per-source
MSE. With two sources each equals the CDDFuse evaluator's value.

The CDDFuse evaluator deviates from its own definitions in three places; we follow the definitions
and ``cddfuse_compat=True`` reproduces the evaluator exactly:

- PSNR uses the fused image's maximum as the peak instead of 255;
- SSIM hands float32 grey levels (0..255) to scikit-image 0.19 without a data range, which then
  takes the float dtype's nominal range (-1, 1), i.e. a data range of 2 instead of 255, and
  computes in float32;
- Qabf sets the edge-strength preservation to the fused gradient magnitude ``g_F`` (not 1) where
  ``g_A == g_F``, which over-credits pixels whose gradients match exactly.

Published tables mix conventions (VIFB's entropy, for example, is not the one used here), so each
function's docstring states exactly what it computes.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from fuse4seg_jax.errors import DataError

# Qabf constants (Xydeas & Petrovic), as in the CDDFuse evaluator.
_QABF_TG, _QABF_KG, _QABF_DG = 0.9994, -15.0, 0.5
_QABF_TA, _QABF_KA, _QABF_DA = 0.9879, -22.0, 0.8
_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_SOBEL_Y = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])


def to_grey_levels(image: np.ndarray, name: str = "image") -> np.ndarray:
    """An 8-bit image as float64 grey levels in [0, 255].

    Arguments:
        image: integer array with values in 0..255, or float array in [0, 1] (converted as
            ``round(x * 255)``, round half to even as ``np.round`` does).
        name: what to call the image in an error message.

    Returns:
        float64 array of the same shape holding integers 0..255.
    """
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.integer) or image.dtype == bool:
        if image.size and (image.min() < 0 or image.max() > 255):
            raise DataError(f"{name}: integer grey levels must lie in 0..255")
        return image.astype(np.float64)
    if np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise DataError(f"{name}: holds NaN or infinite values")
        if image.size and (image.min() < 0.0 or image.max() > 1.0):
            raise DataError(f"{name}: float images must lie in [0, 1] (min {image.min()}, max {image.max()})")
        return np.round(image.astype(np.float64) * 255.0)
    raise DataError(f"{name}: unsupported dtype {image.dtype}")


def _pair(fused: np.ndarray, sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fused = to_grey_levels(fused, "fused image")
    sources = to_grey_levels(sources, "sources")
    if fused.ndim != 2:
        raise DataError(f"fused image must be 2-D (H, W), got shape {fused.shape}")
    if sources.ndim == 2:
        sources = sources[None]
    if sources.ndim != 3 or sources.shape[1:] != fused.shape:
        raise DataError(f"sources {sources.shape} do not match the fused image {fused.shape}")
    return fused, sources


def _single(image: np.ndarray) -> np.ndarray:
    image = to_grey_levels(image, "fused image")
    if image.ndim != 2 or min(image.shape) < 2:
        raise DataError(f"fused image must be 2-D (H, W) with H, W >= 2, got {image.shape}")
    return image


def entropy(fused: np.ndarray) -> float:
    """EN: Shannon entropy in bits of the 256-bin grey-level histogram.

    Arguments:
        fused: ``(H, W)`` 8-bit image (see :func:`to_grey_levels`).

    Returns:
        ``-sum p log2 p`` over occupied bins, in [0, 8].
    """
    levels = _single(fused).astype(np.intp).ravel()
    p = np.bincount(levels, minlength=256) / levels.size
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)))


def standard_deviation(fused: np.ndarray) -> float:
    """SD: population standard deviation (divide by H W) of the grey levels."""
    return float(np.std(_single(fused)))


def spatial_frequency(fused: np.ndarray) -> float:
    """SF: ``sqrt(mean(dx^2) + mean(dy^2))`` with forward differences between neighbours.

    Each mean runs over the differences that exist: ``H (W - 1)`` horizontal and ``(H - 1) W``
    vertical ones.
    """
    image = _single(fused)
    return float(np.sqrt(np.mean(np.diff(image, axis=1) ** 2) + np.mean(np.diff(image, axis=0) ** 2)))


def average_gradient(fused: np.ndarray) -> float:
    """AG: mean over all pixels of ``sqrt((Gx^2 + Gy^2) / 2)``.

    Gradients are central differences ``(x[i+1] - x[i-1]) / 2`` inside and one-sided differences at
    the borders (``np.gradient``'s default).
    """
    gy, gx = np.gradient(_single(fused))
    return float(np.mean(np.sqrt((gx**2 + gy**2) / 2.0)))


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    joint = (
        np.bincount((a.astype(np.intp) * 256 + b.astype(np.intp)).ravel(), minlength=256 * 256).reshape(
            256, 256
        )
        / a.size
    )
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])))


def mutual_information(fused: np.ndarray, sources: np.ndarray) -> float:
    """MI: ``sum_i MI(F, S_i)`` from joint 256 x 256 grey-level histograms, in nats (natural log).

    Arguments:
        fused: ``(H, W)`` 8-bit image.
        sources: ``(N, H, W)`` 8-bit images.

    Returns:
        the sum over sources (the CDDFuse evaluator's ``MI(F, A) + MI(F, B)`` for N = 2).
    """
    fused, sources = _pair(fused, sources)
    return sum(_mutual_information(fused, s) for s in sources)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def scd(fused: np.ndarray, sources: np.ndarray) -> float:
    """SCD, the sum of the correlations of differences (Pearson).

    For two sources ``corr(F - B, A) + corr(F - A, B)``. For N sources,
    ``sum_i corr(F - sum_{j != i} S_j, S_i)``: what is left of F after removing the other sources is
    compared with S_i, which is the two-source definition when N = 2.
    With one source it is ``corr(F, S)``.

    Returns:
        a value in [-N, N]; NaN if a difference image is constant.
    """
    fused, sources = _pair(fused, sources)
    total = sources.sum(axis=0)
    return sum(_correlation(fused - (total - s), s) for s in sources)


def _gaussian_window_1d(size: int) -> np.ndarray:
    # MATLAB's fspecial('gaussian', size, size / 5) is the outer product of this normalised vector.
    x = np.arange(size) - (size - 1) / 2.0
    w = np.exp(-(x**2) / (2.0 * (size / 5.0) ** 2))
    return w / w.sum()


def _filter_valid(image: np.ndarray, w: np.ndarray) -> np.ndarray:
    # Separable (the window is an outer product) and symmetric, so correlation = convolution;
    # cropping the half-width off a zero-padded result leaves exactly the 'valid' part.
    half = (w.size - 1) // 2
    out = ndimage.correlate1d(image, w, axis=0, mode="constant")
    out = ndimage.correlate1d(out, w, axis=1, mode="constant")
    return out[half : out.shape[0] - half, half : out.shape[1] - half]


def _vifp(ref: np.ndarray, dist: np.ndarray, sigma_n_sq: float = 2.0) -> float:
    eps = 1e-10
    num = den = 0.0
    for scale, size in enumerate((17, 9, 5, 3)):
        w = _gaussian_window_1d(size)
        if scale:
            ref = _filter_valid(ref, w)[::2, ::2]
            dist = _filter_valid(dist, w)[::2, ::2]
        mu1, mu2 = _filter_valid(ref, w), _filter_valid(dist, w)
        s1 = np.maximum(_filter_valid(ref * ref, w) - mu1 * mu1, 0.0)
        s2 = np.maximum(_filter_valid(dist * dist, w) - mu2 * mu2, 0.0)
        s12 = _filter_valid(ref * dist, w) - mu1 * mu2
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        flat_ref = s1 < eps
        g[flat_ref] = 0.0
        sv[flat_ref] = s2[flat_ref]
        s1[flat_ref] = 0.0
        flat_dist = s2 < eps
        g[flat_dist] = 0.0
        sv[flat_dist] = 0.0
        negative = g < 0
        sv[negative] = s2[negative]
        g[negative] = 0.0
        sv = np.maximum(sv, eps)
        num += np.sum(np.log10(1.0 + g * g * s1 / (sv + sigma_n_sq)))
        den += np.sum(np.log10(1.0 + s1 / sigma_n_sq))
    value = num / den
    # A constant reference gives 0 / 0; the reference implementations report 1 for it.
    return 1.0 if np.isnan(value) else float(value)


def vif(fused: np.ndarray, sources: np.ndarray) -> float:
    """VIF: ``sum_i VIFp(S_i, F)``, pixel-domain visual information fidelity with S_i the reference.

    Four scales with Gaussian windows of size 17, 9, 5, 3 and sigma = size / 5, 'valid' filtering,
    low-pass then subsample by 2 between scales, noise variance sigma_n^2 = 2, logs base 10 (the
    ratio does not depend on the base). Images must be at least 41 x 41.
    A constant reference (0 / 0) scores 1.
    """
    fused, sources = _pair(fused, sources)
    if min(fused.shape) < 41:
        raise DataError(f"VIF needs images of at least 41 x 41 pixels, got {fused.shape}")
    return sum(_vifp(s, fused) for s in sources)


def _sobel(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Zero padding, as the CDDFuse evaluator's convolve2d(..., 'same').
    gx = ndimage.convolve(image, _SOBEL_X, mode="constant")
    gy = ndimage.convolve(image, _SOBEL_Y, mode="constant")
    strength = np.sqrt(gx * gx + gy * gy)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where(gx == 0, math.pi / 2, np.arctan(gy / gx))
    return strength, angle


def _edge_preservation(
    g_s: np.ndarray, a_s: np.ndarray, g_f: np.ndarray, a_f: np.ndarray, cddfuse_compat: bool
) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(g_s > g_f, g_f / g_s, g_s / g_f)
    ratio = np.where(g_s == g_f, g_f if cddfuse_compat else 1.0, ratio)
    orientation = 1.0 - np.abs(a_s - a_f) / (math.pi / 2)
    q_g = _QABF_TG / (1.0 + np.exp(_QABF_KG * (ratio - _QABF_DG)))
    q_a = _QABF_TA / (1.0 + np.exp(_QABF_KA * (orientation - _QABF_DA)))
    return q_g * q_a


def qabf(fused: np.ndarray, sources: np.ndarray, cddfuse_compat: bool = False) -> float:
    """Qabf (Xydeas-Petrovic): gradient-weighted edge-information preservation, in [0, 1].

    Sobel gradients with zero padding; strength ``g = sqrt(gx^2 + gy^2)``, orientation
    ``arctan(gy / gx)`` (pi / 2 where gx = 0). Per source, strength preservation
    ``min(g_S, g_F) / max(g_S, g_F)`` (1 where equal) and orientation preservation
    ``1 - |a_S - a_F| / (pi / 2)`` go through sigmoids (Tg 0.9994, kg -15, Dg 0.5; Ta 0.9879,
    ka -22, Da 0.8) and are multiplied into Q_SF. Result ``sum_i sum(Q_{S_i F} g_{S_i}) /
    sum_i sum(g_{S_i})`` (weights |grad|, L = 1); with two sources this is the usual Q^{AB/F}.

    Arguments:
        fused: ``(H, W)`` 8-bit image.
        sources: ``(N, H, W)`` 8-bit images.
        cddfuse_compat: where ``g_S == g_F`` use ``g_F`` as the strength ratio, as the CDDFuse
            evaluator does (a bug: the ratio of equal strengths is 1).

    Returns:
        Qabf; NaN if every source is flat (no gradient anywhere).
    """
    fused, sources = _pair(fused, sources)
    g_f, a_f = _sobel(fused)
    num = den = 0.0
    for s in sources:
        g_s, a_s = _sobel(s)
        num += np.sum(_edge_preservation(g_s, a_s, g_f, a_f, cddfuse_compat) * g_s)
        den += np.sum(g_s)
    return float(num / den) if den else math.nan


def _ssim(a: np.ndarray, b: np.ndarray, data_range: float, dtype: type, win: int = 7) -> float:
    # scikit-image's defaults: uniform win x win window (reflected at the border), K1 0.01, K2 0.03,
    # sample covariances, and the mean (in float64) over the pixels whose window lies inside the
    # image. scikit-image computes in the inputs' float dtype, so float32 inputs give float32 maps.
    a, b = a.astype(dtype), b.astype(dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    cov = win * win / (win * win - 1.0)

    def mean(x: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(x, size=win, mode="reflect")

    ua, ub = mean(a), mean(b)
    vaa = cov * (mean(a * a) - ua * ua)
    vbb = cov * (mean(b * b) - ub * ub)
    vab = cov * (mean(a * b) - ua * ub)
    s = ((2 * ua * ub + c1) * (2 * vab + c2)) / ((ua * ua + ub * ub + c1) * (vaa + vbb + c2))
    pad = (win - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean(dtype=np.float64))


def ssim(fused: np.ndarray, sources: np.ndarray, cddfuse_compat: bool = False) -> float:
    """SSIM: ``sum_i SSIM(F, S_i)`` (at most N), as scikit-image's ``structural_similarity``.

    7 x 7 uniform window, K1 = 0.01, K2 = 0.03, sample (n - 1) covariances, mean SSIM over the
    pixels at least 3 away from the border. Data range 255 (the 8-bit range), float64.

    Arguments:
        fused: ``(H, W)`` 8-bit image, H and W at least 7.
        sources: ``(N, H, W)`` 8-bit images.
        cddfuse_compat: data range 2 and float32 arithmetic on the grey levels 0..255, as the
            CDDFuse evaluator's call without a data range on float32 images gets from
            scikit-image 0.19 (the constants become ``(0.02)^2`` and ``(0.06)^2``, so near-flat
            windows score by float32 rounding noise).
    """
    fused, sources = _pair(fused, sources)
    if min(fused.shape) < 7:
        raise DataError(f"SSIM needs images of at least 7 x 7 pixels, got {fused.shape}")
    data_range, dtype = (2.0, np.float32) if cddfuse_compat else (255.0, np.float64)
    return sum(_ssim(fused, s, data_range, dtype) for s in sources)


def psnr(fused: np.ndarray, sources: np.ndarray, cddfuse_compat: bool = False) -> float:
    """PSNR in dB: ``10 log10(255^2 / mean_i MSE(S_i, F))``.

    Arguments:
        fused: ``(H, W)`` 8-bit image.
        sources: ``(N, H, W)`` 8-bit images.
        cddfuse_compat: use ``max(F)`` as the peak instead of 255, as the CDDFuse evaluator does.

    Returns:
        PSNR; ``inf`` if F equals every source.
    """
    fused, sources = _pair(fused, sources)
    mse = float(np.mean((sources - fused[None]) ** 2))
    peak = float(fused.max()) if cddfuse_compat else 255.0
    return 10.0 * math.log10(peak**2 / mse) if mse else math.inf


FUSED_ONLY = {
    "EN": entropy,
    "SD": standard_deviation,
    "SF": spatial_frequency,
    "AG": average_gradient,
}
"""Metric name -> function of the fused image alone."""

AGAINST_SOURCES = {
    "MI": mutual_information,
    "SCD": scd,
    "VIF": vif,
    "Qabf": qabf,
    "SSIM": ssim,
    "PSNR": psnr,
}
"""Metric name -> function of the fused image and its sources."""

_COMPAT = {"Qabf", "SSIM", "PSNR"}


def fusion_scores(fused: np.ndarray, sources: np.ndarray, cddfuse_compat: bool = False) -> dict[str, float]:
    """Every fusion metric of one fused image against its sources.

    Arguments:
        fused: ``(H, W)`` uint8 in 0..255 or float in [0, 1] (converted as ``round(x * 255)``).
        sources: ``(N, H, W)`` in the same convention, the images that were fused.
        cddfuse_compat: reproduce the CDDFuse evaluator's deviations (module docstring).

    Returns:
        ``{"EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "AG", "SSIM", "PSNR"}`` as Python floats,
        ordered as in the papers' tables.
    """
    _pair(fused, sources)
    scores = {name: fn(fused) for name, fn in FUSED_ONLY.items()}
    for name, fn in AGAINST_SOURCES.items():
        kwargs = {"cddfuse_compat": cddfuse_compat} if name in _COMPAT else {}
        scores[name] = fn(fused, sources, **kwargs)
    order = ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "AG", "SSIM", "PSNR")
    return {name: float(scores[name]) for name in order}
