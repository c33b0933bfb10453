"""A run: its directory `runs/<run-id>/`, its settings and its state."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunekit import run_lock
from tunekit.data import DataError
from tunekit.settings import Settings, SettingsError, load_settings
from tunekit.splits import check_file_rows
from tunekit.state import STATE_FILE, RunState


@dataclass(frozen=True)
class Run:
    """One run of the series: every stage of it reads and extends `state`."""

    dir: Path
    settings: Settings

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def state(self) -> RunState:
        return RunState(self.dir)

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, profile={self.settings.profile!r}, dir='{self.dir}')"


def runs_root() -> Path:
    """`$TUNEKIT_RUNS_DIR`, else `runs/` in the project the working directory is in."""
    if env := os.environ.get("TUNEKIT_RUNS_DIR"):
        return Path(env).expanduser().resolve()
    cwd = Path.cwd().resolve()
    project = next((p for p in (cwd, *cwd.parents) if (p / "pyproject.toml").is_file()), cwd)
    return project / "runs"


def list_runs(root: Path | None = None) -> list[Path]:
    """Run directories under `root`, oldest first (run ids sort by time)."""
    root = root or runs_root()
    return sorted(p.parent for p in root.glob(f"*/{STATE_FILE}"))


def latest_run(root: Path | None = None) -> Path:
    """The newest run directory under `root`."""
    runs = list_runs(root)
    if not runs:
        raise FileNotFoundError(
            f"no run under {root or runs_root()}: start one with notebook 01-cluster "
            "or `tunekit run`"
        )
    return runs[-1]


def new_run_id() -> str:
    """A fresh run id: UTC time, sortable, plus a short random suffix."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def start_run(run_dir: str | Path = "", **values: Any) -> Run:
    """Stage 01's entry: open `run_dir`, creating it; a new run under `runs/` when empty."""
    path = Path(run_dir) if run_dir else runs_root() / new_run_id()
    return _open(path, values)


@contextmanager
def claim_run(
    run_dir: str | Path, what: str, /, **values: Any
) -> Iterator[tuple[Run, run_lock.Lock]]:
    """`tunekit run`'s entry: stage 01's, holding the run dir for `what` until the block ends.
    Another holder: RunBusyError naming it, before anything is recorded."""
    path = (Path(run_dir) if run_dir else runs_root() / new_run_id()).expanduser().resolve()
    settings = _validated(path, values)
    path.mkdir(parents=True, exist_ok=True)
    with run_lock.hold(path, what) as lock:
        yield _record(path, settings), lock


def open_run(run_dir: str | Path = "", **values: Any) -> Run:
    """Later stages' entry: open `run_dir`, or the latest run when empty."""
    path = Path(run_dir) if run_dir else latest_run()
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"no run at {path}: run stage 01-cluster first (or `tunekit run`)")
    return _open(path, values)


def recorded_run(run_dir: str | Path) -> Run:
    """The run as recorded, without validating or writing anything (to inspect or stop it)."""
    path = Path(run_dir).expanduser().resolve()
    state = RunState(path)
    if not state.path.is_file():
        raise FileNotFoundError(f"no run at {path} (no {STATE_FILE})")
    return Run(path, Settings.model_construct(**state.section("settings")))


def check_rows(settings: Settings) -> None:
    """The rows of a data file are read and checked at the start (a Hub dataset is read by the
    fine-tune: it may not be reachable from here)."""
    try:
        check_file_rows(settings)
    except DataError as e:
        raise SettingsError(f"invalid settings:\n  dataset: {e}") from None


def _open(path: Path, values: dict[str, Any]) -> Run:
    """Validate the settings (recorded ones, then `values`), then record them."""
    path = path.expanduser().resolve()
    return _record(path, _validated(path, values))


def _validated(path: Path, values: dict[str, Any]) -> Settings:
    """The recorded settings with `values` over them, validated; nothing is written."""
    state = RunState(path)
    recorded = state.section("settings")
    values = {k: v for k, v in values.items() if v is not None and v != ""}  # unset: keep recorded
    wanted = values.get("profile")
    if wanted and recorded.get("profile") and wanted != recorded["profile"]:
        raise SettingsError(
            f"  profile: run {path.name} was started with profile {recorded['profile']!r}; "
            f"start a new run for {wanted!r}"
        )
    settings = load_settings(**{**recorded, **values})
    if settings.data.model_dump() != {k: recorded.get(k) for k in settings.data.names()}:
        check_rows(settings)  # new data settings: a data file's rows, before anything is recorded
    return settings


def _record(path: Path, settings: Settings) -> Run:
    """Record the run (once) and its settings."""
    from tunekit.provenance import kit_version

    path.mkdir(parents=True, exist_ok=True)
    with RunState(path).edit() as data:
        data.setdefault(
            "run",
            {
                "id": path.name,
                "created": datetime.now(UTC).isoformat(),
                "tunekit_version": kit_version(),
            },
        )
        data["settings"] = settings.model_dump()
    return Run(path, settings)
