"""`state.json`: the only hand-off between stages. Each stage reads it and adds its section."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, overload

from filelock import FileLock

from tunekit.records import (
    CleanupRecord,
    ClusterRecord,
    FinetuneRecord,
    MlflowRecord,
    RegistryRecord,
    ReproduceRecord,
    RolloutRecord,
    ServingRecord,
    SweepRecord,
)

STATE_FILE = "state.json"
# the sections of the run itself, not of a stage: the settings, the series' stages, services
Untyped = Literal["settings", "stages", "services"]


class StateError(RuntimeError):
    """state.json cannot be read."""


class RunState:
    """Read `state.json`, or change it atomically (a file lock, then a rename)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / STATE_FILE
        self._lock = FileLock(f"{self.path}.lock", timeout=30)

    def read(self) -> dict[str, Any]:
        """The whole state; {} before the first write."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise StateError(f"{self.path} is not valid JSON ({e}); fix or remove it") from None

    @overload
    def section(self, name: Literal["cluster"]) -> ClusterRecord: ...
    @overload
    def section(self, name: Literal["mlflow"]) -> MlflowRecord: ...
    @overload
    def section(self, name: Literal["finetune"]) -> FinetuneRecord: ...
    @overload
    def section(self, name: Literal["sweep"]) -> SweepRecord: ...
    @overload
    def section(self, name: Literal["registry"]) -> RegistryRecord: ...
    @overload
    def section(self, name: Literal["serving"]) -> ServingRecord: ...
    @overload
    def section(self, name: Literal["cleanup"]) -> CleanupRecord: ...
    @overload
    def section(self, name: Literal["reproduce"]) -> ReproduceRecord: ...
    @overload
    def section(self, name: Literal["rollout"]) -> RolloutRecord: ...
    @overload
    def section(self, name: Untyped) -> dict[str, Any]: ...
    def section(self, name: str) -> Any:
        """One stage's section (its type in `tunekit.records`); {} when the stage has not
        recorded anything."""
        return self.read().get(name, {})

    @contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        """Read, let the caller change the dict, then write it back atomically."""
        with self._lock:
            data = self.read()
            yield data
            self._write(data)

    @overload
    def update(self, section: Literal["cluster"], values: ClusterRecord) -> ClusterRecord: ...
    @overload
    def update(self, section: Literal["mlflow"], values: MlflowRecord) -> MlflowRecord: ...
    @overload
    def update(self, section: Literal["finetune"], values: FinetuneRecord) -> FinetuneRecord: ...
    @overload
    def update(self, section: Literal["sweep"], values: SweepRecord) -> SweepRecord: ...
    @overload
    def update(self, section: Literal["registry"], values: RegistryRecord) -> RegistryRecord: ...
    @overload
    def update(self, section: Literal["serving"], values: ServingRecord) -> ServingRecord: ...
    @overload
    def update(self, section: Literal["cleanup"], values: CleanupRecord) -> CleanupRecord: ...
    @overload
    def update(self, section: Literal["reproduce"], values: ReproduceRecord) -> ReproduceRecord: ...
    @overload
    def update(self, section: Literal["rollout"], values: RolloutRecord) -> RolloutRecord: ...
    @overload
    def update(self, section: Untyped, values: Mapping[str, Any]) -> dict[str, Any]: ...
    def update(self, section: str, values: Mapping[str, Any]) -> Any:
        """Merge `values` into `section` and return the section as written."""
        with self.edit() as data:
            data.setdefault(section, {}).update(values)
            return dict(data[section])

    def _write(self, data: dict[str, Any]) -> None:
        write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` at once: a temporary file in its folder, flushed to disk,
    then renamed over it. A crash mid-write leaves the old file, never a part of the new one.
    The new file is readable by its owner alone (mkstemp's 0600): the secrets file relies on it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
