"""Synthetic BraTS-like cases: a skull-stripped brain with a nested tumour, four MRI contrasts.

The phantom exists so that every feature runs offline and so that fusion genuinely matters: each
modality shows only part of the tumour, as in real scans.

| tissue | T1   | T1ce | T2   | FLAIR | what it means                                   |
|--------|------|------|------|-------|-------------------------------------------------|
| WM     | 0.80 | 0.80 | 0.32 | 0.38  |                                                 |
| GM     | 0.62 | 0.64 | 0.45 | 0.48  |                                                 |
| CSF    | 0.22 | 0.24 | 0.95 | 0.10  | dark on T1 and FLAIR, bright on T2              |
| ED (2) | 0.66 | 0.74 | 0.78 | 0.88  | near WM on T1ce (almost invisible), bright on FLAIR/T2 |
| ET (4) | 0.64 | 1.00 | 0.62 | 0.84  | bright only on T1ce                             |
| NCR (1)| 0.38 | 0.32 | 0.88 | 0.82  | dark on T1ce; on FLAIR all three tumour labels look alike |

So T1ce separates ET from NCR but hardly shows the edema, FLAIR shows the whole tumour but not its
inner structure: only the pair (T1ce, FLAIR) delineates all three labels.

Anatomy is built from smooth distance fields (a noise-deformed ellipsoidal brain with a cortical
grey-matter shell, outer CSF and two ventricles; a tumour of three nested, independently deformed
shells at a random position). Tissue boundaries are soft (a one-voxel sigmoid), which mimics
partial-volume blur; labels are the hard thresholds of the same fields, so NCR is always inside
ET-or-NCR, which is always inside the whole tumour. Each modality then gets a shared tissue
texture, its own smooth multiplicative bias field and Rician noise, and is zero outside the brain.
Intensities are stored as int16 scanner-like units (the per-modality scale differs, as across real
scanners); the reader normalises them per volume.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fuse4seg_jax.atomic import atomic_dir
from fuse4seg_jax.data.nifti import Geometry, write_nifti
from fuse4seg_jax.errors import ConfigError, DataError

# Contrast table above, in the order of the modalities and of _TISSUES.
_MODALITIES = ("t1", "t1ce", "t2", "flair")
_TISSUES = ("wm", "gm", "csf", "ed", "et", "ncr")
_CONTRAST = np.array(
    [
        [0.80, 0.62, 0.22, 0.66, 0.64, 0.38],  # t1
        [0.80, 0.64, 0.24, 0.74, 1.00, 0.32],  # t1ce
        [0.32, 0.45, 0.95, 0.78, 0.62, 0.88],  # t2
        [0.38, 0.48, 0.10, 0.88, 0.84, 0.82],  # flair
    ],
    dtype=np.float32,
)
_SCANNER_SCALE = np.array([900.0, 1100.0, 1400.0, 700.0], dtype=np.float32)
_TEXTURE_AMPLITUDE = 0.05
_BIAS_AMPLITUDE = 0.12
_NOISE_SIGMA = 0.03
_MIN_SIDE = 8


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cells: int, count: int = 1) -> np.ndarray:
    """Random smooth fields: a coarse Gaussian grid interpolated with Gaussian kernels.

    Interpolation is separable (one small matrix per axis), so a 240 x 240 x 155 field costs a
    few tensor contractions instead of a 3-D filter.

    Arguments:
        rng: the random generator (consumed).
        shape: the field's shape (X, Y, Z).
        cells: knots per axis; the wavelength is about ``side / cells``.
        count: how many independent fields.

    Returns:
        ``(count, X, Y, Z)`` float32 fields, each standardised to mean 0 and standard deviation 1.
    """
    knots = rng.standard_normal((count, *(cells,) * len(shape))).astype(np.float32)
    weights = []
    for side in shape:
        u = np.linspace(0.0, cells - 1.0, side, dtype=np.float32)[:, None]
        w = np.exp(-0.5 * ((u - np.arange(cells, dtype=np.float32)) / 0.75) ** 2)
        weights.append(w / w.sum(axis=1, keepdims=True))
    field = np.einsum("cijk,xi,yj,zk->cxyz", knots, *weights, optimize=True)
    field -= field.mean(axis=(1, 2, 3), keepdims=True)
    field /= field.std(axis=(1, 2, 3), keepdims=True) + np.float32(1e-6)
    return field.astype(np.float32, copy=False)


def _soft(inside: np.ndarray, width: float) -> np.ndarray:
    """Soft membership in [0, 1]: 1/2 on the boundary ``inside == 0``, ramp about ``width`` wide."""
    return np.float32(0.5) * (np.float32(1.0) + np.tanh(inside / np.float32(2.0 * width)))


def phantom_case(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic case.

    Arguments:
        rng: the random generator of this case (consumed).
        shape: volume size (X, Y, Z) in voxels of 1 mm.

    Returns:
        ``images`` ``(4, X, Y, Z)`` int16 in the order t1, t1ce, t2, flair (0 outside the brain),
        and ``seg`` ``(X, Y, Z)`` uint8 with BraTS-2021 labels 0, 1 (NCR), 2 (ED), 4 (ET).
    """
    side = np.asarray(shape, dtype=np.float32)
    semi = np.float32(0.42) * side * rng.uniform(0.92, 1.0, 3).astype(np.float32)
    q = [
        ((np.arange(n, dtype=np.float32) - (n - 1) / 2) / a).reshape([-1 if i == d else 1 for i in range(3)])
        for d, (n, a) in enumerate(zip(shape, semi, strict=True))
    ]
    low = smooth_noise(rng, shape, cells=4, count=3 + len(_MODALITIES))
    deform_brain, deform_edema, deform_core = low[0], low[1], low[2]
    bias = low[3:]
    texture = smooth_noise(rng, shape, cells=max(4, int(side.max()) // 8))[0]

    brain_width = 0.6 / float(semi.mean())  # about one voxel in units of the brain radius
    r = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2) + np.float32(0.05) * deform_brain
    brain = r < 1.0
    ventricle = (
        np.minimum(
            *(
                np.sqrt(
                    ((q[0] - s * 0.14) / 0.09) ** 2 + ((q[1] + 0.05) / 0.32) ** 2 + ((q[2] - 0.1) / 0.18) ** 2
                )
                for s in (-1.0, 1.0)
            )
        )
        + np.float32(0.1) * deform_brain
    )

    centre = rng.standard_normal(3)
    centre *= rng.uniform(0.25, 0.45) / np.linalg.norm(centre)
    radius = rng.uniform(0.26, 0.4, 3)
    d = np.sqrt(sum(((q[i] - np.float32(centre[i])) / np.float32(radius[i])) ** 2 for i in range(3)))
    d_edema = d + np.float32(0.22) * deform_edema
    d_core = d + np.float32(0.08) * deform_core
    t_et = rng.uniform(0.55, 0.68)
    t_ncr = t_et - rng.uniform(0.16, 0.24)
    tumour_width = 0.6 / float((radius * semi).mean())

    core = _soft(np.float32(t_et) - d_core, tumour_width)
    layers = (  # painted in order, each over what is below it
        (1, _soft(r - np.float32(0.8), brain_width)),
        (2, _soft(r - np.float32(0.95), brain_width)),
        (2, _soft(np.float32(1.0) - ventricle, brain_width * 3)),
        (3, np.maximum(_soft(np.float32(1.0) - d_edema, tumour_width), core)),
        (4, core),
        (5, _soft(np.float32(t_ncr) - d_core, tumour_width)),
    )
    # Painting layer k over everything below it leaves it the weight w_k * prod_{j>k} (1 - w_j);
    # one contraction with the contrast table then gives all modalities at once.
    weights = np.zeros((len(_TISSUES), *shape), dtype=np.float32)
    above = np.ones(shape, dtype=np.float32)
    for tissue, weight in reversed(layers):
        weights[tissue] += weight * above
        above *= np.float32(1.0) - weight
    weights[0] = above
    images = np.tensordot(_CONTRAST, weights, axes=1)
    images *= np.float32(1.0) + np.float32(_TEXTURE_AMPLITUDE) * texture
    images *= np.exp(np.float32(_BIAS_AMPLITUDE) * bias)
    noise = rng.standard_normal((2, *images.shape), dtype=np.float32) * np.float32(_NOISE_SIGMA)
    images = np.sqrt((images + noise[0]) ** 2 + noise[1] ** 2)
    images *= brain
    images *= _SCANNER_SCALE[:, None, None, None]

    seg = np.zeros(shape, dtype=np.uint8)
    seg[d_edema < 1.0] = 2
    seg[d_core < t_et] = 4
    seg[d_core < t_ncr] = 1
    seg[~brain] = 0
    return np.rint(images).astype(np.int16), seg


def _check_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3 or any(int(s) < _MIN_SIDE for s in shape):
        raise ConfigError(f"--shape must be three sizes >= {_MIN_SIDE}, got {tuple(shape)}")
    return tuple(int(s) for s in shape)


def write_phantom(
    out_dir: str | os.PathLike,
    num_cases: int,
    seed: int,
    shape: tuple[int, int, int] = (96, 96, 64),
    *,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``num_cases`` phantom cases in the BraTS-2021 layout.

    ``out_dir/BraTS2021_XXXXX/BraTS2021_XXXXX_{t1,t1ce,t2,flair,seg}.nii.gz`` with 1 mm spacing,
    origin 0 and identity direction. Case ``i`` depends only on ``(seed, i)``, so the first cases
    of a larger set equal a smaller set with the same seed. The folder appears only when complete.

    Arguments:
        out_dir: the folder to create.
        num_cases: number of cases (>= 1).
        seed: random seed.
        shape: volume size (X, Y, Z) in voxels.
        overwrite: replace an existing ``out_dir``.

    Returns:
        The case folders, in order.
    """
    from tqdm.auto import tqdm

    shape = _check_shape(tuple(shape))
    if num_cases < 1:
        raise ConfigError(f"--cases must be >= 1, got {num_cases}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists; pass --overwrite to replace it")
    names = [f"BraTS2021_{i:05d}" for i in range(num_cases)]
    geometry = Geometry(shape, np.ones(3), np.zeros(3), np.eye(3))
    with atomic_dir(out, overwrite=True) as tmp:
        for i, name in enumerate(tqdm(names, desc="phantom", unit="case")):
            images, seg = phantom_case(np.random.default_rng([seed, i]), shape)
            (tmp / name).mkdir()
            for suffix, volume in (*zip(_MODALITIES, images, strict=True), ("seg", seg)):
                write_nifti(volume, geometry, tmp / name / f"{name}_{suffix}.nii.gz")
    return [out / name for name in names]
