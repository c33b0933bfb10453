"""Keep each notebook and its percent-format pair in step: `make notebooks`.

    python tools/sync_notebooks.py [notebooks/NN-name.ipynb ...]   # sync, then clean
    python tools/sync_notebooks.py --check                          # list pairs that differ

Syncing takes the newer of the two files (jupytext --sync); cleaning leaves what is committed:
no outputs, no execution counts, cell metadata only `tags`, notebook metadata only the kernel,
the language and jupytext's own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat
from jupytext.cli import jupytext as jupytext_cli

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KEPT_METADATA = ("kernelspec", "language_info", "jupytext")


def pairs(paths: list[str]) -> list[Path]:
    return [Path(p) for p in paths] or sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))


def cells(book: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in book.cells]


def differences(ipynb: Path) -> list[str]:
    """What differs between `ipynb` and its .py pair (cell types, sources, tags); [] if none."""
    script = ipynb.with_suffix(".py")
    if not script.is_file():
        return [f"{ipynb.name}: no pair {script.name}"]
    left = cells(nbformat.read(ipynb, as_version=4))
    right = cells(jupytext.read(script))
    if len(left) != len(right):
        return [f"{ipynb.name}: {len(left)} cells, {script.name}: {len(right)}"]
    return [
        f"{ipynb.name}: cell {i} differs from {script.name}"
        for i, (a, b) in enumerate(zip(left, right, strict=True))
        if a != b
    ]


def clean(ipynb: Path) -> None:
    book = nbformat.read(ipynb, as_version=4)
    for cell in book.cells:
        tags = cell.metadata.get("tags")
        cell.metadata = nbformat.NotebookNode({"tags": tags} if tags else {})
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    book.metadata = nbformat.NotebookNode(
        {k: v for k, v in book.metadata.items() if k in KEPT_METADATA}
    )
    book.metadata["language_info"] = {"name": "python"}
    nbformat.write(book, ipynb)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        found = [d for p in pairs(argv[1:]) for d in differences(p)]
        print("\n".join(found) or "every notebook is in sync with its pair")
        return 1 if found else 0
    for ipynb in pairs(argv):
        jupytext_cli(["--sync", "--quiet", str(ipynb)])
        clean(ipynb)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
