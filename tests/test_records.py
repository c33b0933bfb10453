"""The state's sections as `tunekit.records` types them: what the gke plan and the local series
(test_serve.py: stages 01-06 on PostgreSQL) actually write has no field its record does not
declare, with the declared type. mypy checks the code that writes them (`make lint`); this
checks the files.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, get_args, get_origin, get_type_hints

from tunekit import records
from tunekit.state import RunState


def typed_sections() -> dict[str, Any]:
    """Each section `RunState.section` types, and its record: read from its overloads, the one
    place that pairs them."""
    found = {}
    for overload in typing.get_overloads(RunState.section):
        hints = get_type_hints(overload)
        if typing.is_typeddict(hints["return"]):
            (name,) = get_args(hints["name"])
            found[name] = hints["return"]
    return found


SECTIONS = typed_sections()
# the fine-tune's evaluation metrics, under their MLflow names (mlflow_record.evaluate_models)
METRIC = re.compile(r"^[a-z_]+_(exact_match|execution_accuracy|gold_errors)$")


def mismatches(value: Any, hint: Any, where: str) -> list[str]:
    """Where `value` (as read from state.json) is not of type `hint`."""
    origin = get_origin(hint)
    if hint is Any or hint is object:
        return []
    if origin in (typing.Union, types.UnionType):
        options = [mismatches(value, h, where) for h in get_args(hint)]
        return [] if any(not o for o in options) else [f"{where}: {value!r} is not {hint}"]
    if typing.is_typeddict(hint):
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not a {hint.__name__}"]
        return undeclared(value, hint, where)
    if hint is type(None):
        return [] if value is None else [f"{where}: {value!r} is not None"]
    if origin in (dict, Mapping):
        _, item = get_args(hint)
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not a mapping"]
        return [m for k, v in value.items() for m in mismatches(v, item, f"{where}.{k}")]
    if origin in (list, Sequence, tuple):
        (item, *_) = get_args(hint)
        if not isinstance(value, list):  # JSON has lists only
            return [f"{where}: {value!r} is not a list"]
        return [m for i, v in enumerate(value) for m in mismatches(v, item, f"{where}[{i}]")]
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    return [] if ok else [f"{where}: {value!r} is not {hint.__name__}"]


def undeclared(section: dict[str, Any], record: Any, where: str) -> list[str]:
    hints = get_type_hints(record)
    found = []
    for key, value in section.items():
        if key not in hints:
            if record is records.FinetuneRecord and METRIC.match(key):
                continue
            found.append(f"{where}.{key}: not a field of {record.__name__}")
        else:
            found += mismatches(value, hints[key], f"{where}.{key}")
    return found


def check(state: RunState) -> list[str]:
    data = state.read()
    return [
        m for name, record in SECTIONS.items() for m in undeclared(data.get(name, {}), record, name)
    ]


def test_the_gke_plan_writes_what_the_records_declare(dry_run):
    data = dry_run.state.read()
    assert {"cluster", "mlflow", "finetune", "registry", "serving", "cleanup"} <= set(data)
    assert check(dry_run.state) == []


def test_a_field_no_record_declares_is_found(tmp_path):
    """The check itself: an unknown field, a wrong type, a wrong nested type."""
    state = RunState(tmp_path)
    state.update("cluster", {"bucket": "b", "profile": "local"})
    assert check(state) == []
    state.update("stages", {})  # not a stage's record: not checked
    raw = {"bucket": 3, "bukcet": "b", "endpoints": {"gcs": 1}}
    state.update("cluster", raw)  # type: ignore[typeddict-unknown-key]
    assert sorted(check(state)) == [
        "cluster.bucket: 3 is not str",
        "cluster.bukcet: not a field of ClusterRecord",
        "cluster.endpoints.gcs: 1 is not str",
    ]


def test_the_gke_plans_sweep_writes_what_its_record_declares(tmp_path, monkeypatch):
    import tunekit

    monkeypatch.setenv("TUNEKIT_RUNS_DIR", str(tmp_path / "runs"))
    run = tunekit.start_run(tmp_path / "run", profile="gke", dry_run=True, project_id="p-1")
    tunekit.create_cluster(run)
    tunekit.start_mlflow(run)
    tunekit.sweep(run, tunekit.Sweep(run.settings))
    assert "sweep" in run.state.read() and check(run.state) == []


def test_every_record_types_a_section():
    """Each stage's record in records.py is the type of one section (none declared and unused)."""
    stage_records = {
        value
        for value in vars(records).values()
        if typing.is_typeddict(value) and value.__name__.endswith("Record")
    }
    assert set(SECTIONS.values()) == stage_records
    assert {"cluster", "finetune", "serving", "cleanup"} <= set(SECTIONS)
