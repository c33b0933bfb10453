"""Structure of every notebook: the tutorial shape, one parameters cell, no outputs."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib

import nbformat
import pytest

from tunekit.stages import STAGES

from .conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import sync_notebooks

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
    assert set(nb.metadata) <= {"kernelspec", "language_info", "jupytext"}
    assert all(set(c.metadata) <= {"tags"} for c in nb.cells)
    # exactly one parameters cell, defining what the runner injects
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assignments = [n for n in ast.parse(params[0].source).body if isinstance(n, ast.Assign)]
    assigned = {t.id for node in assignments for t in node.targets if isinstance(t, ast.Name)}
    assert {"run_dir", "profile", "settings"} <= assigned
    # a form (Colab's `# @param`): one assignment per line, each with its field type
    lines = [line for line in params[0].source.splitlines() if line.strip()]
    assert len(lines) == len(assignments)
    assert all("  # @param " in line for line in lines), params[0].source
    # papermill reads every one of them (`papermill --help-notebook`, its translators'
    # `inspect`: a line with a second `=`, e.g. in an SQL default, is skipped with a warning)
    import papermill

    assert set(papermill.inspect_notebook(str(path))) == assigned
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_is_in_sync_with_its_script(path):
    """notebooks/NN-name.py (jupytext percent format) holds the same cells: edit either, then
    `make notebooks`."""
    assert sync_notebooks.differences(path) == []


def test_the_sync_check_fails_on_a_changed_pair_and_make_notebooks_mends_it(tmp_path):
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    book, script = (
        tmp_path / "notebooks" / "05-deploy-simple.ipynb",
        tmp_path / "notebooks" / "05-deploy-simple.py",
    )
    edited = script.read_text().replace("## Ask a question", "## Ask the champion a question")
    assert edited != script.read_text()
    script.write_text(edited)
    os.utime(script, (time.time() + 5, time.time() + 5))  # the newer file of the pair
    assert sync_notebooks.differences(book) == [f"{book.name}: cell 9 differs from {script.name}"]
    done = subprocess.run([sys.executable, str(REPO / "tools" / "sync_notebooks.py"), str(book)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sync_notebooks.differences(book) == []
    assert "## Ask the champion a question" in nbformat.read(book, as_version=4).cells[9].source


def test_make_notebooks_clears_what_a_session_leaves(tmp_path):
    """A notebook saved after a run in JupyterLab has outputs and metadata; the committed one
    has neither."""
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    path = tmp_path / "notebooks" / "07-cleanup.ipynb"
    book = nbformat.read(path, as_version=4)
    code = next(c for c in book.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", text="hello\n")]
    code.execution_count, code.metadata["scrolled"] = 3, True
    book.metadata["widgets"] = {"state": {}}
    nbformat.write(book, path)
    sync_notebooks.main([str(path)])
    cleaned = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cleaned.cells)
    assert "scrolled" not in cleaned.cells[book.cells.index(code)].metadata
    assert "widgets" not in cleaned.metadata and sync_notebooks.differences(path) == []


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
