"""Synthetic Harvard-style image pairs: an MRI slice and a CT, PET or SPECT slice of one head.

The generator exists so that paired fusion training runs offline (the Harvard atlas cannot be
redistributed) and so that fusion matters: each modality shows what the other hides.

| kind      | MRI (grey)                                  | second modality                          |
|-----------|---------------------------------------------|------------------------------------------|
| mri-ct    | soft tissue: grey / white matter, CSF,      | grey: a bright bone rim (skull), soft    |
|           | lesion; the skull is dark                   | tissue nearly flat, no lesion            |
| mri-pet   | as above                                    | colour, 1/4 resolution: uptake in grey   |
|           |                                             | matter and a hot lesion, "hot" colours   |
| mri-spect | as above                                    | colour, 1/8 resolution: perfusion of the |
|           |                                             | cortex, a cold lesion, "rainbow" colours |

Both images of a pair come from one anatomy (smooth distance fields of a noise-deformed ellipse:
scalp, skull, cortex, white matter, two ventricles, a lesion at a random place), so they are
registered by construction. The functional images are computed on a coarse grid and upsampled
bilinearly, which gives the blocky blur of real PET / SPECT, then mapped to RGB by a colour map
whose luma (BT.601 Y) rises with the value, as in the Harvard atlas. Everything outside the head
is black.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fuse4seg_jax.atomic import atomic_dir
from fuse4seg_jax.data.phantom import smooth_noise
from fuse4seg_jax.errors import ConfigError, DataError

KINDS = ("mri-ct", "mri-pet", "mri-spect")
_MIN_SIZE = 16
# Colour maps: anchors (value, R, G, B) interpolated linearly; the luma of each rises with value.
_COLOUR_MAPS = {
    "pet": np.array([[0.0, 0, 0, 0], [0.35, 0.75, 0.05, 0], [0.7, 1, 0.6, 0], [1.0, 1, 1, 0.85]]),
    "spect": np.array(
        [
            [0.0, 0, 0, 0],
            [0.25, 0.1, 0.1, 0.7],
            [0.5, 0.05, 0.7, 0.3],
            [0.75, 0.85, 0.8, 0.1],
            [1.0, 1, 0.75, 0.65],
        ]
    ),
}
_FUNCTIONAL_SCALE = {"pet": 4, "spect": 8}  # coarse grid: one value per scale x scale pixels


def folder_names(kind: str) -> tuple[str, str]:
    """The two folder names of a kind, e.g. ``("MRI", "PET")`` for ``"mri-pet"``.

    Raises:
        ConfigError: ``kind`` is not one of :data:`KINDS`.
    """
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    first, second = kind.upper().split("-")
    return first, second


def kind_of(folders: Sequence[str]) -> str | None:
    """The kind whose folder names are ``folders`` (``("MRI", "PET")`` -> ``"mri-pet"``), or None."""
    return next((kind for kind in KINDS if folder_names(kind) == tuple(folders)), None)


def _anatomy(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    """Soft tissue memberships ``(size, size)`` in [0, 1] of one random head."""
    axis = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / np.float32(size / 2)
    y, x = axis[:, None], axis[None, :]
    deform, fold, lesion_shape = smooth_noise(rng, (size, size, 1), cells=5, count=3)[..., 0]
    semi = rng.uniform(0.78, 0.9, 2).astype(np.float32)
    r = np.sqrt((x / semi[0]) ** 2 + (y / semi[1]) ** 2) + np.float32(0.03) * deform
    width = np.float32(1.5 / size)  # about one pixel in these units

    def inside(distance: np.ndarray) -> np.ndarray:  # 1 inside (distance < 0), soft boundary
        return np.float32(0.5) * (np.float32(1.0) - np.tanh(distance / width))

    head = inside(r - 1.0)
    inner_skull, inner_table, brain = (inside(r - edge) for edge in (0.96, 0.9, 0.87))
    # a folded cortex: the grey-matter shell's inner edge follows the fold field
    white = inside(r - 0.72 - np.float32(0.06) * fold)
    ventricles = np.maximum(
        *(inside(np.sqrt(((x - s * 0.13) / 0.08) ** 2 + ((y + 0.05) / 0.26) ** 2) - 1.0) for s in (-1, 1))
    )
    angle = rng.uniform(0, 2 * np.pi)
    centre = rng.uniform(0.25, 0.5) * np.array([np.cos(angle), np.sin(angle)], np.float32)
    radius = np.float32(rng.uniform(0.1, 0.17))
    d = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / radius + np.float32(0.15) * lesion_shape
    lesion = inside(d - 1.0) * brain
    return {
        "scalp": head - inner_skull,
        "skull": inner_skull - inner_table,
        "head": head,
        "brain": brain,
        "grey": brain * (1 - white),
        "white": white * (1 - ventricles),
        "csf": white * ventricles + inner_table - brain,
        "lesion": lesion,
    }


def _texture(rng: np.random.Generator, size: int, amplitude: float) -> np.ndarray:
    return (
        np.float32(1.0)
        + np.float32(amplitude) * smooth_noise(rng, (size, size, 1), cells=size // 6)[0, ..., 0]
    )


def _mri(t: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """T2-like MRI: bright CSF, grey above white matter, a brighter lesion, dark skull, grey scalp."""
    tissue = 0.45 * t["scalp"] + 0.08 * t["skull"] + 0.55 * t["grey"] + 0.35 * t["white"] + 0.95 * t["csf"]
    image = tissue * (1 - t["lesion"]) + 0.8 * t["lesion"]
    image = image * _texture(rng, image.shape[0], 0.08)
    return np.clip(image + rng.normal(0, 0.015, image.shape).astype(np.float32) * t["head"], 0, 1)


def _ct(t: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """CT: a bright bone rim, flat soft tissue with slightly darker CSF; the lesion does not show."""
    soft = t["head"] - t["skull"]
    image = 0.95 * t["skull"] + 0.3 * soft - 0.08 * t["csf"]
    image = image * _texture(rng, image.shape[0], 0.04)
    return np.clip(image + rng.normal(0, 0.01, image.shape).astype(np.float32) * t["head"], 0, 1)


def _functional(t: dict[str, np.ndarray], rng: np.random.Generator, tracer: str) -> np.ndarray:
    """PET / SPECT as RGB ``(size, size, 3)`` in [0, 1]: activity on a coarse grid, upsampled, coloured."""
    from PIL import Image

    lesion_activity = 1.0 if tracer == "pet" else 0.05  # FDG-hot tumour; a perfusion defect
    activity = 0.85 * t["grey"] + 0.35 * t["white"] + 0.05 * t["csf"]
    activity = activity * (1 - t["lesion"]) + lesion_activity * t["lesion"]
    activity = activity * _texture(rng, activity.shape[0], 0.15)
    size, scale = activity.shape[0], _FUNCTIONAL_SCALE[tracer]
    coarse = Image.fromarray(np.clip(activity, 0, 1).astype(np.float32), mode="F")
    coarse = coarse.resize((max(size // scale, 2),) * 2, Image.Resampling.BOX)
    value = np.asarray(coarse.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    value = np.clip(value, 0, 1) * t["head"]
    anchors = _COLOUR_MAPS[tracer]
    return np.stack([np.interp(value, anchors[:, 0], anchors[:, c]) for c in (1, 2, 3)], axis=-1)


def synthetic_pair(rng: np.random.Generator, kind: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic pair.

    Arguments:
        rng: the random generator of this pair (consumed).
        kind: one of :data:`KINDS`.
        size: the side of the square images in pixels.

    Returns:
        ``(mri, other)`` as 8-bit arrays: ``mri (size, size)``; ``other (size, size)`` for CT,
        ``(size, size, 3)`` RGB for PET and SPECT.
    """
    folder_names(kind)
    tissues = _anatomy(rng, size)
    mri = _mri(tissues, rng)
    tracer = kind.split("-")[1]
    other = _ct(tissues, rng) if tracer == "ct" else _functional(tissues, rng, tracer)
    return tuple(np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8) for image in (mri, other))


def write_synthetic_pairs(
    out_dir: str | os.PathLike,
    kind: str,
    count: int,
    seed: int = 0,
    size: int = 256,
    *,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write ``count`` synthetic pairs as two folders of PNGs matched by name.

    ``out_dir/MRI/0000.png`` ... and ``out_dir/<CT|PET|SPECT>/0000.png`` ...: the layout that
    :func:`fuse4seg_jax.data.paired.read_paired_folder` reads and ``data.paired_dir`` of a
    paired config names. Pair ``i`` depends only on ``(seed, i)``, so the first pairs of a larger
    set equal a smaller set with the same seed. The folder appears only when complete.

    Arguments:
        out_dir: the folder to create.
        kind: one of :data:`KINDS`.
        count: number of pairs (>= 1).
        seed: random seed.
        size: image side in pixels (>= 16; the Harvard atlas is 256).
        overwrite: replace an existing ``out_dir``.

    Returns:
        The two image folders (MRI first).

    Raises:
        ConfigError: bad ``kind``, ``count`` or ``size``.
        DataError: ``out_dir`` exists and not ``overwrite``.
    """
    from PIL import Image
    from tqdm.auto import tqdm

    names = folder_names(kind)
    if count < 1:
        raise ConfigError(f"--count must be >= 1, got {count}")
    if size < _MIN_SIZE:
        raise ConfigError(f"--size must be >= {_MIN_SIZE}, got {size}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists; pass --overwrite to replace it")
    with atomic_dir(out, overwrite=True) as tmp:
        for name in names:
            (tmp / name).mkdir()
        for i in tqdm(range(count), desc="pairs", unit="pair"):
            for name, image in zip(
                names, synthetic_pair(np.random.default_rng([seed, i]), kind, size), strict=True
            ):
                Image.fromarray(image).save(tmp / name / f"{i:04d}.png")
    return out / names[0], out / names[1]
