"""Write files and folders so that a failure never leaves anything half-written.

Everything is first written under a temporary sibling name in the same folder (so the final
``os.replace`` is a same-filesystem rename) and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``path`` only if the block finishes without error.

    Arguments:
        path: the final folder. Its parent is created if needed.
        overwrite: replace an existing ``path``; otherwise an existing ``path`` is an error.

    Returns:
        (as the context value) the temporary folder to write into.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator:
    """Open a temporary file that replaces ``path`` only if the block finishes without error."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.partial-", dir=final.parent)
    os.close(fd)
    try:
        with open(tmp, mode) as f:
            yield f
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
