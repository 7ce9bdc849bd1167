"""``fuse4seg evaluate``: score segmentations against ground truth, or fused images against sources.

Two modes:

- ``--pred DIR --truth DIR``: NIfTI label volumes. A case is a sub-folder holding one
  ``*seg*.nii.gz`` (or a single ``*.nii.gz``), named by the folder, or a ``*.nii.gz`` directly in
  DIR, named by the file without ``.nii.gz`` and a trailing ``_seg`` / ``-seg``. Every ground-truth
  case is scored per region (:data:`fuse4seg_jax.metrics.REGIONS`) with the ground truth's spacing.
- ``--fused DIR --sources DIR [DIR ...]``: 2-D images (PNG, 8-bit grey, or colour converted to
  luma Y; or NIfTI, integer 0..255 or float in [0, 1]) matched by file name without extension;
  every image of the first source folder is a case.

A case without a prediction (or fused image) is an error (exit 2) naming every missing case, unless
``--allow-missing``: then it gets an explicit ``missing`` row in the CSV and JSON, the summary names
it, and the means are over the scored cases only. Writes ``scores.csv``, ``summary.md`` and
``scores.json`` into ``--out`` (default ``<pred or fused DIR>/evaluation``), each atomically, and
prints the summary.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from fuse4seg_jax.atomic import atomic_file
from fuse4seg_jax.errors import ConfigError, DataError

_NIFTI = ".nii.gz"
_IMAGE_SUFFIXES = (".png", _NIFTI)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    seg = parser.add_argument_group("segmentations (NIfTI label volumes)")
    seg.add_argument("--pred", type=Path, help="folder of predicted segmentations")
    seg.add_argument("--truth", type=Path, help="folder of ground-truth segmentations")
    seg.add_argument(
        "--et-label",
        choices=("auto", "3", "4"),
        default="auto",
        help="on-disk label of enhancing tumour: 4 (BraTS 2021), 3 (BraTS 2023) or auto, taken "
        "per case from the ground truth (from the prediction if the truth has no ET)",
    )
    fus = parser.add_argument_group("fused images (PNG or NIfTI, 2-D)")
    fus.add_argument("--fused", type=Path, help="folder of fused images")
    fus.add_argument("--sources", type=Path, nargs="+", help="one folder per source modality")
    fus.add_argument(
        "--cddfuse-compat",
        action="store_true",
        help="reproduce the CDDFuse evaluator's PSNR peak, SSIM data range and Qabf tie handling",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: <pred|fused>/evaluation)")
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="score the cases present and list missing ones instead of failing",
    )
    parser.add_argument("--label", default="mean ± std", help="row name in the summary table")


def _case_id(path: Path) -> str:
    stem = path.name.removesuffix(_NIFTI).removesuffix(".png")
    for suffix in ("_seg", "-seg"):
        stem = stem.removesuffix(suffix)
    return stem


def _by_case(found: Iterable[tuple[str, Path]]) -> dict[str, Path]:
    cases: dict[str, Path] = {}
    for case, file in found:
        if case in cases:
            raise DataError(f"{file}: case {case} appears twice (also {cases[case]})")
        cases[case] = file
    return cases


def find_segmentations(folder: Path) -> dict[str, Path]:
    """Case id -> segmentation file in ``folder`` (layouts in the module docstring)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(sub.glob(f"*seg*{_NIFTI}")) or sorted(sub.glob(f"*{_NIFTI}"))
        if len(files) > 1:
            names = ", ".join(f.name for f in files)
            raise DataError(f"{sub}: several candidate segmentations ({names})")
        found += [(sub.name, file) for file in files]
    found += [(_case_id(file), file) for file in sorted(folder.glob(f"*{_NIFTI}"))]
    cases = _by_case(found)
    if not cases:
        raise DataError(f"{folder}: no NIfTI segmentations (*{_NIFTI}) found")
    return cases


def find_images(folder: Path) -> dict[str, Path]:
    """Case id (file name without extension) -> 2-D image file (PNG or NIfTI) in ``folder``."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.name.endswith(_IMAGE_SUFFIXES))
    cases = _by_case((file.name.removesuffix(_NIFTI).removesuffix(".png"), file) for file in files)
    if not cases:
        raise DataError(f"{folder}: no images (*.png, *{_NIFTI}) found")
    return cases


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise DataError(f"{path}: cannot be read as NIfTI ({str(err).strip().splitlines()[-1]})") from None
    # GetArrayFromImage reverses the axes (z, y, x); reverse the spacing to match.
    return sitk.GetArrayFromImage(image), tuple(image.GetSpacing())[::-1]


def _on_disk_labels(path: Path, volume: np.ndarray) -> tuple[np.ndarray, set[int]]:
    if not np.issubdtype(volume.dtype, np.integer):
        if not np.all(np.isfinite(volume)) or np.any(volume != np.round(volume)):
            bad = volume[~np.isfinite(volume) | (volume != np.round(volume))].flat[0]
            raise DataError(f"{path}: non-integer label values (for example {bad})")
    volume = volume.astype(np.int64)
    low, high = int(volume.min()), int(volume.max())
    if low < 0 or high > 4:
        raise DataError(f"{path}: label values must lie in 0..4, found {low}..{high}")
    return volume, set(np.flatnonzero(np.bincount(volume.ravel())).tolist())


def _to_internal(path: Path, volume: np.ndarray, values: set[int], et: int) -> np.ndarray:
    unexpected = values - {0, 1, 2, et}
    if unexpected:
        raise DataError(
            f"{path}: unexpected label values {sorted(unexpected)} (expected 0, 1, 2 and {et} "
            "for ET; see --et-label)"
        )
    return np.where(volume == et, 3, volume).astype(np.int32)


def _et_label(choice: str, path: Path, values: set[int]) -> int | None:
    if choice != "auto":
        return int(choice)
    if {3, 4} <= values:
        raise DataError(f"{path}: holds both 3 and 4; pass --et-label to say which is ET")
    return 4 if 4 in values else 3 if 3 in values else None


def score_segmentation_case(pred_path: Path, truth_path: Path, et_choice: str) -> dict:
    """One case's flat score row (``segmentation_row``) from two NIfTI files."""
    from fuse4seg_jax.metrics import segmentation_row, segmentation_scores

    truth, spacing = _read_nifti(truth_path)
    pred, _ = _read_nifti(pred_path)
    if pred.shape != truth.shape:
        raise DataError(
            f"{pred_path}: shape {pred.shape[::-1]} differs from ground truth {truth_path} "
            f"{truth.shape[::-1]}"
        )
    truth, truth_values = _on_disk_labels(truth_path, truth)
    pred, pred_values = _on_disk_labels(pred_path, pred)
    et = _et_label(et_choice, truth_path, truth_values)
    if et is None:
        et = _et_label(et_choice, pred_path, pred_values) or 4
    truth = _to_internal(truth_path, truth, truth_values, et)
    pred = _to_internal(pred_path, pred, pred_values, et)
    return segmentation_row(segmentation_scores(pred, truth, spacing))


def read_image(path: Path) -> np.ndarray:
    """A 2-D image as uint8 grey levels (colour PNGs as luma Y, ITU-R 601; see to_grey_levels)."""
    from fuse4seg_jax.metrics import to_grey_levels

    if path.name.endswith(_NIFTI):
        image = np.squeeze(_read_nifti(path)[0])
    else:
        from PIL import Image

        with Image.open(path) as img:
            if img.mode not in ("L", "RGB", "RGBA", "P", "LA"):
                raise DataError(f"{path}: PNG mode {img.mode} is not 8-bit grey or colour")
            image = np.asarray(img.convert("L"))
    if image.ndim != 2:
        raise DataError(f"{path}: expected a 2-D image, got shape {image.shape}")
    return to_grey_levels(image, str(path)).astype(np.uint8)


def score_fused_case(fused_path: Path, source_paths: list[Path], cddfuse_compat: bool) -> dict:
    """One fused image's score row (``fusion_scores``) against its source images."""
    from fuse4seg_jax.metrics import fusion_scores

    fused = read_image(fused_path)
    sources = []
    for path in source_paths:
        source = read_image(path)
        if source.shape != fused.shape:
            raise DataError(f"{path}: shape {source.shape} differs from {fused_path} {fused.shape}")
        sources.append(source)
    return fusion_scores(fused, np.stack(sources), cddfuse_compat=cddfuse_compat)


@dataclasses.dataclass(frozen=True)
class _Plan:
    out: Path  # output folder
    scored_folder: Path  # where the predictions (or fused images) were looked for
    cases: list[str]  # every case the reference folder defines, in order
    scorers: dict[str, Callable[[], dict]]  # case -> its score row, for cases with a prediction
    unmatched: list[str]  # predictions with no reference case (reported, not scored)


def _plan(args: argparse.Namespace) -> _Plan:
    segmentation = args.pred is not None or args.truth is not None
    fusion = args.fused is not None or args.sources is not None
    if segmentation == fusion:
        raise ConfigError("give either --pred and --truth, or --fused and --sources")
    if segmentation:
        if args.pred is None or args.truth is None:
            raise ConfigError("--pred and --truth go together")
        truths = find_segmentations(args.truth)
        preds = find_segmentations(args.pred)
        scorers = {
            case: (lambda p=preds[case], t=truth: score_segmentation_case(p, t, args.et_label))
            for case, truth in truths.items()
            if case in preds
        }
        unmatched = sorted(set(preds) - set(truths))
        out = args.out or args.pred / "evaluation"
        return _Plan(out, args.pred, list(truths), scorers, unmatched)
    if args.fused is None or args.sources is None:
        raise ConfigError("--fused and --sources go together")
    per_source = [find_images(folder) for folder in args.sources]
    for folder, images in zip(args.sources[1:], per_source[1:], strict=True):
        absent = sorted(set(per_source[0]) - set(images))
        if absent:
            raise DataError(f"{folder}: missing source images {', '.join(absent)}")
    fused = find_images(args.fused)
    scorers = {
        case: (
            lambda f=fused[case], c=case: score_fused_case(
                f, [images[c] for images in per_source], args.cddfuse_compat
            )
        )
        for case in per_source[0]
        if case in fused
    }
    unmatched = sorted(set(fused) - set(per_source[0]))
    out = args.out or args.fused / "evaluation"
    return _Plan(out, args.fused, list(per_source[0]), scorers, unmatched)


def _json_safe(value: object) -> object:
    return value if not isinstance(value, float) or math.isfinite(value) else None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fuse4seg_jax.metrics import column_statistics, summarise

    plan = _plan(args)
    missing = [case for case in plan.cases if case not in plan.scorers]
    if missing and not args.allow_missing:
        raise DataError(
            f"{plan.scored_folder}: {len(missing)} of {len(plan.cases)} cases have no prediction: "
            f"{', '.join(missing)} (pass --allow-missing to score the others and list these)"
        )
    if plan.unmatched:
        print(f"warning: not scored, no reference case: {', '.join(plan.unmatched)}", file=sys.stderr)
    rows = []
    for case in tqdm(plan.cases, desc="evaluate", unit="case", file=sys.stderr):
        if case in plan.scorers:
            rows.append({"case": case, "status": "ok", **plan.scorers[case]()})
        else:
            rows.append({"case": case, "status": "missing"})
    summary = summarise(rows, label=args.label)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    report = {
        "cases": [{k: _json_safe(v) for k, v in row.items()} for row in rows],
        "missing": missing,
        "summary": {
            column: {k: _json_safe(v) for k, v in stats.items()}
            for column, stats in column_statistics(rows).items()
        },
    }
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "scores.csv") as f:
        f.write(table.getvalue())
    with atomic_file(out / "summary.md") as f:
        f.write(summary)
    with atomic_file(out / "scores.json") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
    print(summary, end="")
    if missing:
        print(f"warning: {len(missing)} case(s) missing: {', '.join(missing)}", file=sys.stderr)
    print(f"wrote {out}/scores.csv, summary.md, scores.json", file=sys.stderr)
    return 0
