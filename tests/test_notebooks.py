"""Structure of every notebook: the tutorial shape, one parameters cell, no outputs."""

from __future__ import annotations

import ast

import nbformat
import pytest

from tunekit.stages import STAGES

from .conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_notebooks_are_the_numbered_stages():
    names = [p.stem for p in NOTEBOOKS]
    assert names, "no notebooks"
    assert set(names) <= set(STAGES)
    assert {"01-cluster", "02-mlflow", "07-cleanup"} <= set(names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    # committed without outputs
    assert all(not c.outputs and c.execution_count is None for c in code)
    # exactly one parameters cell, defining what the runner injects
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assigned = {
        t.id for node in ast.parse(params[0].source).body for t in getattr(node, "targets", [])
    }
    assert {"run_dir", "profile", "settings"} <= assigned
    # reads like a cloud tutorial
    headings = [
        line
        for c in nb.cells
        if c.cell_type == "markdown"
        for line in c.source.splitlines()
        if line.startswith("#")
    ]
    assert headings[0].startswith(f"# {path.stem[:2]} ")
    required = ["## Overview", "### Objective", "### Costs", "## Before you begin"]
    if path.stem != "07-cleanup":  # 07 is the cleaning up
        required.append("## Cleaning up")
    assert [h for h in required if h not in headings] == []
    # every code cell is explained by the markdown before it, and stays short
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert i > 0 and nb.cells[i - 1].cell_type == "markdown"
            assert len(cell.source.splitlines()) <= 20
    # thin: the notebook calls tunekit, it does not branch on the profile
    source = "\n".join(c.source for c in code)
    assert "tunekit." in source
    assert "if profile" not in source and "profile ==" not in source


def test_notebooks_are_what_their_source_writes(tmp_path):
    """tools/build_notebooks.py holds the notebooks' text; the committed files match it."""
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, str(REPO / "tools" / "build_notebooks.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    written = sorted(p.name for p in tmp_path.glob("*.ipynb"))
    assert written == [p.name for p in NOTEBOOKS]
    stale = [p.name for p in NOTEBOOKS if p.read_bytes() != (tmp_path / p.name).read_bytes()]
    assert not stale, f"edit tools/build_notebooks.py and re-run it: {stale}"
