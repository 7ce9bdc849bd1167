"""Time per case of every metric: a 240 x 240 x 155 BraTS-sized segmentation and a 224 x 224 fusion.

Run from the repository root: ``PYTHONPATH=. python benchmarks/metrics.py [--repeats 5]``.
Single-threaded (BLAS / OpenMP pinned to one thread). Prints the median time per call and, where
an independent implementation exists (medpy, sewar, scikit-image, scikit-learn), its time measured
in the same run and the ratio.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from fuse4seg_jax.metrics import fusion, segmentation_scores  # noqa: E402
from fuse4seg_jax.metrics.segmentation import REGIONS  # noqa: E402
from fuse4seg_jax.metrics.surface import hd95_mm  # noqa: E402


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _tumour(seed: int) -> np.ndarray:
    """A BraTS-sized label volume with an irregular tumour (WT about 100 cm^3)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.ogrid[:240, :240, :155]
    radius = np.sqrt((x - 120.0) ** 2 + (y - 110.0) ** 2 + ((z - 75.0) * 1.2) ** 2)
    bumpy = radius + 6 * ndimage.gaussian_filter(rng.normal(size=(240, 240, 155)), 4) * 8
    labels = np.zeros((240, 240, 155), np.int32)
    labels[bumpy < 30] = 2
    labels[bumpy < 18] = 1
    labels[(bumpy < 14) & (bumpy > 8)] = 3
    return labels


def _row(name: str, ours: float, other: float | None = None, other_name: str = "") -> str:
    if other is None:
        return f"| {name} | {ours * 1e3:9.2f} | | |"
    return f"| {name} | {ours * 1e3:9.2f} | {other_name} {other * 1e3:.2f} | {other / ours:.2f}x |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    from medpy.metric import binary as medpy
    from sewar.full_ref import vifp
    from skimage.metrics import structural_similarity
    from sklearn.metrics import mutual_info_score

    truth, pred = _tumour(0), _tumour(1)
    print(f"segmentation case {truth.shape}, median of {repeats}, one thread")
    print("| metric | ours (ms) | reference (ms) | reference / ours |")
    print("|---|---|---|---|")
    for region, labels in REGIONS.items():
        p, t = np.isin(pred, labels), np.isin(truth, labels)
        ours = _median_seconds(lambda p=p, t=t: hd95_mm(p, t), repeats)
        theirs = _median_seconds(lambda p=p, t=t: medpy.hd95(p, t), max(1, repeats // 2))
        print(_row(f"HD95 {region} ({int(t.sum())} voxels)", ours, theirs, "medpy"))
        ours = _median_seconds(
            lambda r={region: labels}: segmentation_scores(pred, truth, regions=r), repeats
        )
        print(_row(f"all five scores, {region} alone", ours))
    print(
        _row(
            "segmentation_scores, all 5 regions",
            _median_seconds(lambda: segmentation_scores(pred, truth), repeats),
        )
    )

    rng = np.random.default_rng(0)
    a, b = (
        np.clip(ndimage.gaussian_filter(rng.normal(128, 200, (224, 224)), 2) + 128, 0, 255)
        .round()
        .astype(np.uint8)
        for _ in range(2)
    )
    f = ((a.astype(np.int32) + b) // 2).astype(np.uint8)
    sources = np.stack([a, b])
    af, bf, ff = (x.astype(np.float64) for x in (a, b, f))
    references = {
        "MI": (
            "sklearn",
            lambda: mutual_info_score(f.ravel(), a.ravel()) + mutual_info_score(f.ravel(), b.ravel()),
        ),
        "VIF": ("sewar", lambda: vifp(a, f) + vifp(b, f)),
        "SSIM": (
            "skimage",
            lambda: (
                structural_similarity(ff, af, data_range=255) + structural_similarity(ff, bf, data_range=255)
            ),
        ),
    }
    print(f"\nfusion case {f.shape} with 2 sources, median of {repeats}, one thread")
    print("| metric | ours (ms) | reference (ms) | reference / ours |")
    print("|---|---|---|---|")
    for name, fn in {**fusion.FUSED_ONLY, **fusion.AGAINST_SOURCES}.items():
        call = (lambda fn=fn: fn(f)) if name in fusion.FUSED_ONLY else (lambda fn=fn: fn(f, sources))
        ours = _median_seconds(call, repeats)
        if name in references:
            label, ref = references[name]
            print(_row(name, ours, _median_seconds(ref, repeats), label))
        else:
            print(_row(name, ours))
    print(_row("fusion_scores, all 10", _median_seconds(lambda: fusion.fusion_scores(f, sources), repeats)))


if __name__ == "__main__":
    main()
