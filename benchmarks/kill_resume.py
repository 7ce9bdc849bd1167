"""Kill ``fuse4seg train`` with SIGKILL at chosen moments, resume each run, compare with an unkilled run.

A short run of ``configs/smoke.py`` (tiny models, phantom data) is first trained without
interruption. Then, for each moment, a fresh run is started, killed with SIGKILL (no chance to
clean up) and continued with ``--resume``; its final ``metrics.jsonl`` and ``scores.json`` must
equal the unkilled run's. The moments: while a checkpoint is being written (orbax's temporary
folder exists), during the final evaluation (the last step is logged but no score file exists
yet), and random times. Exit code 1 if any resumed run differs.

    python -m benchmarks.kill_resume [--random 3] [--seed 0] [--workdir /tmp/kill_resume]

The runs share a persistent compilation cache (``<workdir>/jax_cache``), so only the first one
compiles.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fuse4seg_jax.train.checkpoint import CHECKSUMS

POLL_S = 0.02
TMP = "orbax-checkpoint-tmp"


def overrides(root: Path) -> list[str]:
    """configs/smoke.py with longer stages (14 steps over all four stage kinds), data under ``root``."""
    return [
        f"--config.data.manual_dir={root / 'phantom'}",
        f"--config.data.data_dir={root / 'prepared'}",
        "--config.stages.pretrain=4",
        "--config.stages.follower=4",
        "--config.stages.bilevel=6",
    ]


def _train(root: Path, workdir: Path, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
        "PYTHONPATH": str(Path.cwd()),
    }
    command = [sys.executable, "-m", "fuse4seg_jax.cli", "train", "--config", "configs/smoke.py"]
    command += ["--workdir", str(workdir), "--no-progress", *extra, *overrides(root)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, what: str) -> None:
    _, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{what} failed (exit {process.returncode}):\n{err}")


# A moment is a test of (run folder, seconds since the run started).
Moment = Callable[[Path, float], bool]


def _writing_checkpoint(workdir: Path, _: float) -> bool:
    folder = workdir / "checkpoints"
    return folder.is_dir() and any(TMP in p.name for p in folder.iterdir())


def _evaluating(total: int) -> Moment:
    # the last checkpoint is complete (its checksums written) and the scores are not yet
    return lambda workdir, _: (
        (workdir / "checkpoints" / str(total) / CHECKSUMS).is_file()
        and not (workdir / "scores.json").exists()
    )


def _after(seconds: float) -> Moment:
    return lambda _, elapsed: elapsed >= seconds


def _checkpoints_left(workdir: Path) -> str:
    folder = workdir / "checkpoints"
    names = sorted(folder.iterdir(), key=lambda p: p.name) if folder.is_dir() else []
    return " ".join(f"{p.name.split('.')[0]}(partial)" if TMP in p.name else p.name for p in names) or "-"


def _outputs(workdir: Path) -> tuple[list, dict]:
    metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line]
    return metrics, json.loads((workdir / "scores.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--random", type=int, default=3, help="kills at random times (besides the two phases)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill times")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/kill_resume"))
    args = parser.parse_args()
    root = args.workdir
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)

    start = time.monotonic()
    _finish(_train(root, root / "reference"), "the uninterrupted run")
    reference_s = time.monotonic() - start
    reference = _outputs(root / "reference")
    total = reference[0][-1]["step"]
    start = time.monotonic()  # a second run: how long one takes with the programs cached
    _finish(_train(root, root / "timing"), "the timing run")
    run_s = time.monotonic() - start
    print(f"uninterrupted run: {total} steps, {reference_s:.0f} s (compiling), {run_s:.0f} s cached")

    rng = random.Random(args.seed)
    moments = [("writing a checkpoint", _writing_checkpoint), ("evaluating", _evaluating(total))]
    for _ in range(args.random):
        seconds = rng.uniform(0.1, 0.95) * run_s
        moments.append((f"at {seconds:.1f} s", _after(seconds)))

    print(f"{'killed':<24}{'at s':>7}{'checkpoints left':>18}{'metrics equal':>15}{'scores equal':>14}")
    all_equal = True
    for i, (name, moment) in enumerate(moments):
        workdir = root / f"killed_{i}"
        process, started = _train(root, workdir), time.monotonic()
        while process.poll() is None and not moment(workdir, time.monotonic() - started):
            time.sleep(POLL_S)
        if process.poll() is not None:
            raise SystemExit(f"run {i} ended before the moment '{name}' came; nothing was killed")
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at = time.monotonic() - started
        left = _checkpoints_left(workdir)
        _finish(_train(root, workdir, "--resume"), f"resuming run {i}")
        metrics, scores = _outputs(workdir)
        same = (metrics == reference[0], scores == reference[1])
        all_equal &= all(same)
        print(f"{name:<24}{killed_at:>7.1f}{left:>18}{str(same[0]):>15}{str(same[1]):>14}")
    print("every resumed run equals the uninterrupted one" if all_equal else "MISMATCH: see the table")
    return 0 if all_equal else 1


if __name__ == "__main__":
    sys.exit(main())
