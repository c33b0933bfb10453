"""Structure of every notebook: the tutorial shape, one parameters cell, no outputs."""

from __future__ import annotations

import ast
import importlib.util
import re
import tomllib

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
    # committed without outputs, and without what a session leaves (widget state, ids)
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert set(nb.metadata) == {"kernelspec", "language_info"}
    assert all(set(c.metadata) <= {"tags"} for c in nb.cells)
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


GITHUB = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["tunekit"]["github"]
_LINK = re.compile(r"\[!\[([^\]]+)\]\([^)]+\)\]\(([^)]+)\)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_launch_badges_follow_the_one_setting(path):
    """Colab, Vertex AI Workbench and GitHub badges, all from `[tool.tunekit] github`."""
    org_repo, ref = GITHUB.rsplit("/", 1)
    nb_path = f"notebooks/{path.name}"
    raw = f"https://raw.githubusercontent.com/{org_repo}/{ref}/{nb_path}"
    expected = {
        "Open in Colab": f"https://colab.research.google.com/github/{org_repo}/blob/{ref}/{nb_path}",
        "Open in Vertex AI Workbench": "https://console.cloud.google.com/vertex-ai/workbench/"
        f"deploy-notebook?download_url={raw}",
        "View on GitHub": f"https://github.com/{org_repo}/blob/{ref}/{nb_path}",
    }
    title = nbformat.read(path, as_version=4).cells[0].source
    assert dict(_LINK.findall(title)) == expected


def _setup_cell(path):
    cells = nbformat.read(path, as_version=4).cells
    return next(c for c in cells if c.cell_type == "code" and "find_spec" in c.source)


class _Shell:
    """Stands in for IPython's `get_ipython()`: records the magics a cell runs."""

    def __init__(self):
        self.magics = []

    def run_line_magic(self, name, line, *args):
        self.magics.append(f"%{name} {line}")


def _run_setup(source, monkeypatch, tunekit_installed):
    from IPython.core.inputtransformer2 import TransformerManager

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: real(name, *a) if tunekit_installed or name != "tunekit" else None,
    )
    shell = _Shell()
    exec(TransformerManager().transform_cell(source), {"get_ipython": lambda: shell})
    return shell.magics


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_setup_cell_does_nothing_in_a_checkout(path, monkeypatch):
    assert _setup_cell(path) is not None
    assert _run_setup(_setup_cell(path).source, monkeypatch, tunekit_installed=True) == []


def test_setup_cell_installs_the_kit_where_it_is_missing(monkeypatch):
    org_repo, ref = GITHUB.rsplit("/", 1)
    magics = _run_setup(_setup_cell(NOTEBOOKS[0]).source, monkeypatch, tunekit_installed=False)
    assert magics == [f'%pip install --quiet "tunekit @ git+https://github.com/{org_repo}@{ref}"']
