"""The layers of lib/tunekit (DEVELOPERS.md): settings and run state below the backends, the
backends below the stages, the stages below the CLI and the notebooks. A module may import
from its own layer or below; the backends are reached through the stages (`backend_for`),
and what both profiles derive (MLflow's server arguments, the machine tables) lives in a
module both import.

Read from the source by `ast`, imports inside functions included (a deferred import hides a
cycle from Python, not from this test).
"""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

from .conftest import REPO

LIB = REPO / "lib"
# above the backends: the stages (the one dispatcher), what runs them, the notebooks' helpers
ABOVE_BACKENDS = {
    "tunekit",
    "tunekit.__main__",
    "tunekit.stages",
    "tunekit.cli",
    "tunekit.series",
    "tunekit.plots",
}
# where the setting that asks for the gke plan is declared, and recorded (the cluster section's
# field); what acts on it is in backends/
DRY_RUN_DECLARED = {"tunekit.settings_groups", "tunekit.records"}


def module_name(path: Path) -> str:
    parts = path.relative_to(LIB).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolved(module: str, name: str) -> str:
    """What `from module import name` imports: the submodule `name` where there is one."""
    submodule = f"{module}.{name}"
    path = LIB.joinpath(*submodule.split("."))
    return submodule if path.with_suffix(".py").is_file() or path.is_dir() else module


def imports(path: Path) -> set[str]:
    """Every tunekit module `path` imports, at the top or inside a function."""
    return imports_of(path.read_text())


def upward(path: Path) -> set[tuple[str, str]]:
    """The imports of `path` that cross a layer upward: a backend, or the stages and what is
    above them, from below the stages; the gke backend from the local one."""
    name = module_name(path)
    crossing = set()
    below_stages = name not in ABOVE_BACKENDS
    for imported in imports(path):
        into_backends = imported.startswith("tunekit.backends")
        if into_backends and below_stages and not name.startswith("tunekit.backends"):
            crossing.add((name, imported))
        if below_stages and imported in ABOVE_BACKENDS:
            crossing.add((name, imported))
        if name.startswith("tunekit.backends.local") and imported.startswith(
            "tunekit.backends.gke"
        ):
            crossing.add((name, imported))
    return crossing


def test_no_module_imports_from_a_layer_above_it():
    found = {c for path in sorted((LIB / "tunekit").rglob("*.py")) for c in upward(path)}
    assert not found, f"upward imports (pass what the module needs instead): {sorted(found)}"


def test_nothing_outside_the_backends_knows_of_the_dry_run():
    """The plan is a backend: the modules outside backends/ read what a backend gives them and
    never ask whether it is the plan (the setting is declared in settings_groups.py and its
    recorded value in records.py; the stages pass it on untouched)."""
    naming = re.compile(r"[Dd]ry.run|\bPlan\b|[Tt]he (gke )?plan\b")
    found = [
        f"{path.relative_to(LIB)}:{number}: {line.strip()}"
        for path in sorted((LIB / "tunekit").rglob("*.py"))
        if "backends" not in path.parts and module_name(path) not in DRY_RUN_DECLARED
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if naming.search(line)
    ]
    assert not found, "\n".join(found)


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
    # the stages may: they dispatch; a lower module may not call the stages either
    stages = LIB / "tunekit" / "stages.py"
    assert upward_of("from tunekit.backends import backend_for\n", stages) == set()
    tracking = LIB / "tunekit" / "tracking.py"
    assert upward_of("from tunekit.stages import tracking_client\n", tracking) == {
        ("tunekit.tracking", "tunekit.stages")
    }
    processes = LIB / "tunekit" / "backends" / "local" / "processes.py"
    chart = "from tunekit.backends.gke.workloads import mlflow_values\n"
    assert upward_of(chart, processes) == {
        ("tunekit.backends.local.processes", "tunekit.backends.gke.workloads")
    }


def upward_of(source: str, as_path: Path) -> set[tuple[str, str]]:
    """`upward` of `source` as if it were the file `as_path` (nothing is written there)."""
    import unittest.mock

    with unittest.mock.patch.object(Path, "read_text", lambda self: source):
        return upward(as_path)


MOST_LINES = 400  # a module longer than this is split by what its parts are about


def test_no_module_is_over_400_lines():
    long = {
        str(path.relative_to(LIB)): n
        for path in sorted((LIB / "tunekit").rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > MOST_LINES
    }
    assert not long, f"modules over {MOST_LINES} lines: {long}"


def import_graph(sources: dict[str, str] | None = None) -> dict[str, set[str]]:
    """Each module of lib/tunekit and the modules of lib/tunekit it imports (at the top, in
    functions, for type checking); `sources` replaces some modules' text (name -> source)."""
    graph = {}
    for path in sorted((LIB / "tunekit").rglob("*.py")):
        name = module_name(path)
        source = (sources or {}).get(name) or path.read_text()
        graph[name] = imports_of(source) - {name}
    return graph


def imports_of(source: str) -> set[str]:
    """The tunekit modules `source` imports (`from tunekit import x`: the module x)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tunekit"):
            found |= {resolved(node.module, a.name) for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tunekit")}
    return found


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle of imports in `graph`, or []."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as e:
        return list(e.args[1])
    return []


def test_no_modules_import_one_another_in_a_cycle():
    """Once 36 of the 70 modules were one cycle, held together by imports inside functions
    (a lower module asking the dispatcher). A package that re-exports its modules is not
    imported back by them: they import each other by their own names."""
    assert cycle(import_graph()) == []


def test_a_planted_cycle_is_found():
    """tracking asking the stages for a client, as it once asked the dispatcher."""
    planted = "def f(run):\n    from tunekit.stages import tracking_client\n"
    source = (LIB / "tunekit" / "tracking.py").read_text() + planted
    found = cycle(import_graph({"tunekit.tracking": source}))
    assert "tunekit.tracking" in found and "tunekit.stages" in found
