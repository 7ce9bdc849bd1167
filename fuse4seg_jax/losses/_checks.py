"""Shape checks shared by the losses that compare a fused image with its sources."""

from __future__ import annotations

import jax


def check_fused_and_sources(loss_name: str, fused: jax.Array, sources: jax.Array) -> None:
    """Raise ``ValueError`` unless ``fused`` is ``(B, H, W, 1)``, ``sources`` ``(B, H, W, N)``."""
    if fused.ndim != 4 or sources.ndim != 4 or fused.shape[-1] != 1 or fused.shape[:3] != sources.shape[:3]:
        raise ValueError(
            f"{loss_name}: fused must be (B, H, W, 1) and sources (B, H, W, N) with the same "
            f"B, H, W; got {fused.shape} and {sources.shape}"
        )
