"""The layers of lib/tunekit (DEVELOPERS.md): settings and run state below the backends, the
backends below the stages, the stages below the CLI and the notebooks. A module may import
from its own layer or below; the backends are reached through the stages (`backend_for`).

Read from the source by `ast`, imports inside functions included (a deferred import hides a
cycle from Python, not from this test). Upward imports that are still there are listed in
KNOWN, each to be removed (issue 28); the list must shrink, never grow.
"""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

LIB = REPO / "lib"
# above the backends: what runs the stages
ABOVE_BACKENDS = {"tunekit", "tunekit.stages", "tunekit.cli", "tunekit.runner"}
# upward imports still in the code: (importer, imported module)
KNOWN = {
    ("tunekit.data", "tunekit.backends"),
    ("tunekit.reproduce", "tunekit.backends"),
    ("tunekit.serving", "tunekit.backends"),
    ("tunekit.serving", "tunekit.backends.gke.addons"),
    ("tunekit.tracking", "tunekit.backends"),
    ("tunekit.backends.local.processes", "tunekit.backends.gke"),
    ("tunekit.backends.local.processes", "tunekit.backends.gke.workloads"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(LIB).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every tunekit module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tunekit"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tunekit")}
    return found


def upward(path: Path) -> set[tuple[str, str]]:
    """The imports of `path` that cross a layer upward: a backend from outside the backends
    (but for the stages and above), the gke backend from the local one."""
    name = module_name(path)
    crossing = set()
    for imported in imports(path):
        into_backends = imported.startswith("tunekit.backends")
        if into_backends and not name.startswith("tunekit.backends") and name not in ABOVE_BACKENDS:
            crossing.add((name, imported))
        if name.startswith("tunekit.backends.local") and imported.startswith(
            "tunekit.backends.gke"
        ):
            crossing.add((name, imported))
    return crossing


def test_no_module_imports_from_a_layer_above_it():
    found = {c for path in sorted((LIB / "tunekit").rglob("*.py")) for c in upward(path)}
    new = found - KNOWN
    assert not new, f"upward imports (pass what the module needs instead): {sorted(new)}"
    gone = KNOWN - found
    assert not gone, f"removed, take them off KNOWN: {sorted(gone)}"


def test_a_planted_upward_import_is_caught(tmp_path):
    """A lower module that asks the dispatcher inside a function, as tracking.py once did."""
    planted = LIB / "tunekit" / "_planted_for_test.py"
    source = (
        "def f(run):\n    from tunekit.backends import backend_for\n    return backend_for(run)\n"
    )
    assert upward_of(source, planted) == {("tunekit._planted_for_test", "tunekit.backends")}
    settings = LIB / "tunekit" / "settings.py"
    machines = "def f():\n    from tunekit.backends.gke.node_sizing import MACHINES\n"
    assert upward_of(machines, settings) == {
        ("tunekit.settings", "tunekit.backends.gke.node_sizing")
    }
    # the stages may: they dispatch
    stages = LIB / "tunekit" / "stages.py"
    assert upward_of("from tunekit.backends import backend_for\n", stages) == set()


def upward_of(source: str, as_path: Path) -> set[tuple[str, str]]:
    """`upward` of `source` as if it were the file `as_path` (nothing is written there)."""
    import unittest.mock

    with unittest.mock.patch.object(Path, "read_text", lambda self: source):
        return upward(as_path)
