"""``fuse4seg evaluate``: score segmentations against ground truth, or fused images against sources.

Two modes:

- ``--pred DIR --truth DIR``: NIfTI label volumes. A case is a sub-folder holding one
  ``*seg*.nii.gz`` (or a single ``*.nii.gz``), named by the folder, or a ``*.nii.gz`` directly in
  DIR, named by the file without ``.nii.gz`` and a trailing ``_seg`` / ``-seg``. Every ground-truth
  case is scored per region (:data:`fuse4seg_jax.metrics.REGIONS`) with the ground truth's spacing.
- ``--fused DIR --sources DIR [DIR ...]``: 2-D images (PNG, grey or colour converted to luma Y,
  16-bit rounded to 8-bit levels; or NIfTI, integer 0..255 or float in [0, 1]) matched by file
  name without extension; every image of the first source folder is a case. ``--cddfuse-compat``
  reads PNGs as the CDDFuse evaluator does (:data:`fuse4seg_jax.data.images.GREY_CONVERSIONS`)
  and scores with its PSNR, SSIM and Qabf conventions (``docs/conventions.md#metrics``).

Files are read by :mod:`fuse4seg_jax.data` (NIfTI volumes in ``(X, Y, Z)`` order, BraTS labels
mapped by :mod:`fuse4seg_jax.data.labels`); ``scores.csv`` and ``scores.json`` follow
:mod:`fuse4seg_jax.metrics.score_files` (NaN as empty cell / null).

A case without a prediction (or fused image) is an error (exit 2) naming every missing case, unless
``--allow-missing``: then it gets an explicit ``missing`` row in the CSV and JSON, the summary names
it, and the means are over the scored cases only. Writes ``scores.csv``, ``summary.md`` and
``scores.json`` into ``--out`` (default ``<pred or fused DIR>/evaluation``), each atomically, and
prints the summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from fuse4seg_jax.atomic import atomic_file
from fuse4seg_jax.data.images import NIFTI_SUFFIX as _NIFTI
from fuse4seg_jax.errors import ConfigError, DataError

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
        help="score as the CDDFuse evaluator does: SSIM with data range 2 in float32 (not 255 in "
        "float64), PSNR peak max(F) (not 255), Qabf strength ratio g_F where g_S == g_F (not 1), and "
        "colour PNGs made grey as OpenCV's float32 BGR2GRAY rounded (not float BT.601 luma "
        "rounded), 16-bit PNGs by their high byte (not rounded to 255 levels)",
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


def score_segmentation_case(pred_path: Path, truth_path: Path, et_choice: str) -> dict:
    """One case's flat score row (``segmentation_row``) from two NIfTI files.

    Both volumes are read in NIfTI index order ``(X, Y, Z)`` and scored with the ground truth's
    spacing; the ET label is ``et_choice`` (``"3"``, ``"4"``) or, for ``"auto"``, the one present
    in the truth, else in the prediction, else 4.
    """
    from fuse4seg_jax import data
    from fuse4seg_jax.metrics import segmentation_row, segmentation_scores

    truth, geometry = data.read_nifti(truth_path, dims=(2, 3))
    pred, _ = data.read_nifti(pred_path, dims=(2, 3))
    if pred.shape != truth.shape:
        raise DataError(
            f"{pred_path}: shape {pred.shape} differs from ground truth {truth_path} {truth.shape}"
        )
    truth, truth_values = data.check_label_values(truth, truth_path)
    pred, pred_values = data.check_label_values(pred, pred_path)
    chosen = {str(et): naming for naming, et in data.ET_LABELS.items()}.get(et_choice)
    naming = chosen or data.naming_of(truth_values, truth_path) or data.naming_of(pred_values, pred_path)
    naming = naming or "2021"
    truth = data.to_internal(truth, naming, truth_path, hint="; see --et-label")
    pred = data.to_internal(pred, naming, pred_path, hint="; see --et-label")
    return segmentation_row(segmentation_scores(pred, truth, geometry.spacing))


def _grey_levels(path: Path, cddfuse_compat: bool) -> np.ndarray:
    """A 2-D image as uint8 grey levels (colour PNGs as luma Y, ITU-R 601; see to_grey_levels).

    With ``cddfuse_compat`` PNGs become grey as in the CDDFuse evaluator (``read_png``'s
    ``grey="cddfuse"``).
    """
    from fuse4seg_jax import data
    from fuse4seg_jax.metrics import to_grey_levels

    grey = "cddfuse" if cddfuse_compat else "luma"
    return to_grey_levels(data.read_image(path, grey), str(path)).astype(np.uint8)


def score_fused_case(fused_path: Path, source_paths: list[Path], cddfuse_compat: bool) -> dict:
    """One fused image's score row (``fusion_scores``) against its source images."""
    from fuse4seg_jax.metrics import fusion_scores

    fused = _grey_levels(fused_path, cddfuse_compat)
    sources = []
    for path in source_paths:
        source = _grey_levels(path, cddfuse_compat)
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


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fuse4seg_jax.metrics import summarise, write_scores

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
    write_scores(plan.out, rows, missing)
    with atomic_file(plan.out / "summary.md") as f:
        f.write(summary)
    print(summary, end="")
    if missing:
        print(f"warning: {len(missing)} case(s) missing: {', '.join(missing)}", file=sys.stderr)
    print(f"wrote {plan.out}/scores.csv, summary.md, scores.json", file=sys.stderr)
    return 0
