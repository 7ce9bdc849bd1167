"""The glass-box picture of a cross-attention leader: where modality 1 looks in the others.

For a leader whose output holds ``attention (N - 1, B, heads, T, T)`` (Fuse4Seg v1 eq. 8:
``cross_attention``, ``fuse4seg_v1``), the report's ``attention.png`` shows, for a few test
slices, modality 1 with one query cell outlined (the cell holding the most tumour, else the
centre cell), and for each other modality its image under that cell's attention row of each head:
which regions of modality ``j`` the query region draws its features from.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fuse4seg_jax.train.evaluation import in_chunks  # noqa: E402
from fuse4seg_jax.train.trainer import State, Trainer  # noqa: E402


def attention_maps(trainer: Trainer, state: State, images: np.ndarray) -> np.ndarray | None:
    """The EMA leader's attention on ``images (S, H, W, N)``, or None for a leader without any.

    Returns:
        ``(S, N - 1, heads, T, T)`` float32, sample-major; rows sum to 1.
    """
    probe = jax.eval_shape(lambda: trainer.objectives.fuse(state["ema"], images[:1]))
    if "attention" not in probe:
        return None

    def attention(x: jax.Array) -> dict[str, jax.Array]:
        return {"attention": trainer.objectives.fuse(state["ema"], x)["attention"].swapaxes(0, 1)}

    return in_chunks(jax.jit(attention), trainer.mesh, images)["attention"]


def token_grid(image_shape: tuple[int, int], tokens: int) -> tuple[int, int]:
    """``(rows, columns)`` of the square patch cells that tile an ``H x W`` image into ``tokens``."""
    h, w = image_shape
    patch = math.isqrt(h * w // tokens)
    if patch * patch * tokens != h * w or h % patch or w % patch:
        raise ValueError(f"{tokens} tokens do not tile a {h} x {w} image in square cells")
    return h // patch, w // patch


def query_token(label: np.ndarray, grid: tuple[int, int]) -> int:
    """Row-major index of the cell of ``label (H, W)`` with the most tumour; the centre cell if none."""
    rows, cols = grid
    h, w = label.shape
    tumour = (label > 0).reshape(rows, h // rows, cols, w // cols).sum(axis=(1, 3))
    if tumour.max() == 0:
        return (rows // 2) * cols + cols // 2
    return int(np.argmax(tumour))


def save_attention_gallery(
    path: Path, samples: list[dict[str, Any]], attention: np.ndarray, modalities: tuple[str, ...]
) -> None:
    """Draw ``attention (S, N - 1, heads, T, T)`` of the ``S`` samples (``image``, ``label``,
    ``case_id``, ``slice`` as ``fuse4seg_jax.train.evaluation.evaluate`` returns them) to ``path``.

    One row per sample: modality 1 with the query cell outlined, then for each other modality
    ``j`` its image and, per head, the query's attention row over ``j``'s cells, upsampled to
    pixels and laid over the image.
    """
    others, heads, tokens = attention.shape[1], attention.shape[2], attention.shape[3]
    image_shape = samples[0]["image"].shape[:2]
    grid = token_grid(image_shape, tokens)
    cell = (image_shape[0] // grid[0], image_shape[1] // grid[1])
    columns = 1 + others * (1 + heads)
    fig, axes = plt.subplots(
        len(samples), columns, figsize=(2.1 * columns, 2.3 * len(samples)), squeeze=False
    )
    for row, sample, maps in zip(axes, samples, attention, strict=True):
        query = query_token(sample["label"], grid)
        r, c = divmod(query, grid[1])
        row[0].imshow(sample["image"][..., 0], cmap="gray", vmin=0, vmax=1)
        row[0].add_patch(
            plt.Rectangle(
                (c * cell[1] - 0.5, r * cell[0] - 0.5), cell[1], cell[0], fill=False, edgecolor="red", lw=1.5
            )
        )
        row[0].set_title(f"{modalities[0]}: query cell", fontsize=8)
        row[0].text(
            0, -0.12, f"{sample['case_id']} slice {sample['slice']}", transform=row[0].transAxes, fontsize=7
        )
        for j in range(others):
            base = 1 + j * (1 + heads)
            source = sample["image"][..., j + 1]
            row[base].imshow(source, cmap="gray", vmin=0, vmax=1)
            row[base].set_title(modalities[j + 1], fontsize=8)
            for head in range(heads):
                weights = np.kron(maps[j, head, query].reshape(grid), np.ones(cell, np.float32))
                ax = row[base + 1 + head]
                ax.imshow(source, cmap="gray", vmin=0, vmax=1)
                ax.imshow(weights, cmap="inferno", alpha=0.6)
                ax.set_title(f"head {head + 1} over {modalities[j + 1]}", fontsize=8)
        for ax in row:
            ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
