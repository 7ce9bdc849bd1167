"""Time and disk size of `fuse4seg prepare` on phantom cases (default 20 cases at 96 x 96 x 64).

Prints the phantom generation time, the prepare time and the sizes side by side: the NIfTI
input, the ArrayRecord dataset, and the raw float32 bytes of the slices it holds.

    python benchmarks/prepare.py [--cases 20] [--shape 96 96 64]
"""

import argparse
import tempfile
import time
from pathlib import Path

from fuse4seg_jax.data import open_split, prepare_dataset, write_phantom


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 96, 64))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_phantom(root / "cases", args.cases, seed=0, shape=tuple(args.shape))
        phantom_s = time.perf_counter() - start
        start = time.perf_counter()
        path = prepare_dataset(root / "cases", root / "tfds")
        prepare_s = time.perf_counter() - start
        splits = {s: open_split(path, s) for s in ("train", "val", "test")}
        slices = sum(len(s) for s in splits.values())
        h, w = args.shape[:2]
        raw_mb = slices * h * w * (2 * 4 + 4) / 2**20  # two float32 channels + int32 label
        nifti_mb, dataset_mb = _size_mb(root / "cases"), _size_mb(path)
    print(f"{args.cases} phantom cases of {' x '.join(map(str, args.shape))}, modalities t1ce + flair")
    print(f"{'step':<28}{'seconds':>10}")
    print(f"{'phantom (5 files / case)':<28}{phantom_s:>10.2f}")
    print(f"{'prepare (tfds ArrayRecord)':<28}{prepare_s:>10.2f}")
    print(f"{'what':<28}{'MiB':>10}{'ratio':>8}")
    print(f"{'NIfTI input (all 4 + seg)':<28}{nifti_mb:>10.1f}{nifti_mb / raw_mb:>8.2f}")
    print(f"{'ArrayRecord dataset':<28}{dataset_mb:>10.1f}{dataset_mb / raw_mb:>8.2f}")
    print(f"{'raw slices (float32)':<28}{raw_mb:>10.1f}{1.0:>8.2f}")
    print("slices: " + ", ".join(f"{s} {len(src)} ({len(src.case_ids)} cases)" for s, src in splits.items()))


if __name__ == "__main__":
    main()
