"""Every notebook in notebooks/ runs end to end (its own asserts check what its text claims)."""

import json
from pathlib import Path

import jax
import matplotlib
import pytest

NOTEBOOKS = sorted(Path(__file__).resolve().parents[1].glob("notebooks/*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.setattr("matplotlib.pyplot.show", lambda *a, **k: None)
    cells = json.loads(path.read_text())["cells"]
    code = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    x64 = jax.config.jax_enable_x64
    try:  # a notebook may switch float64 on for itself; the rest of the session must not see it
        exec(compile(code, str(path), "exec"), {"__name__": "__main__"})
    finally:
        jax.config.update("jax_enable_x64", x64)


def test_there_is_a_notebook():
    assert NOTEBOOKS
