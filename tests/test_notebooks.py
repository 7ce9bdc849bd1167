"""Every notebook in notebooks/ runs end to end (its own asserts check what its text claims).

A notebook too costly for the default run declares itself slow in its metadata,
``"fuse4seg": {"slow": true}``, and runs with the slow tests.
"""

import json
from pathlib import Path

import jax
import matplotlib
import pytest

NOTEBOOKS = sorted(Path(__file__).resolve().parents[1].glob("notebooks/*.ipynb"))


def _param(path: Path):
    slow = json.loads(path.read_text())["metadata"].get("fuse4seg", {}).get("slow", False)
    return pytest.param(path, id=path.name, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("path", [_param(p) for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.setattr("matplotlib.pyplot.show", lambda *a, **k: None)
    cells = json.loads(path.read_text())["cells"]
    code = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    x64 = jax.config.jax_enable_x64
    # A notebook runs as a user runs it: with JAX's standard dtype promotion, not the suite's
    # strict one (optax's Adam, which the Fuse4Seg notebooks train with, needs it).
    try:  # a notebook may switch float64 on for itself; the rest of the session must not see it
        with jax.numpy_dtype_promotion("standard"):
            exec(compile(code, str(path), "exec"), {"__name__": "__main__"})
    finally:
        jax.config.update("jax_enable_x64", x64)


def test_there_is_a_notebook():
    assert NOTEBOOKS
