"""The series runner: the numbered notebooks in order, headless, with papermill."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TimeElapsedColumn

from tunekit.run import Run
from tunekit.stages import STAGES

_RANGE = re.compile(r"^(\d{1,2})-(\d{1,2})$")


@dataclass
class StageResult:
    stage: str
    status: str  # "ok" or "failed"
    seconds: float
    notebook: Path
    error: str = ""


def parse_stages(spec: str) -> list[str]:
    """'all', '01-07', '1-3', '01,02' or '02-mlflow,07' -> stage names in series order."""
    numbers = {int(s[:2]): s for s in STAGES}
    chosen: set[str] = set()
    for token in filter(None, (t.strip() for t in spec.split(","))):
        if token == "all":
            chosen.update(STAGES)
        elif m := _RANGE.match(token):
            lo, hi = int(m[1]), int(m[2])
            if lo not in numbers or hi not in numbers or lo > hi:
                raise ValueError(_bad_stages(token))
            chosen.update(numbers[i] for i in range(lo, hi + 1))
        elif token in STAGES:
            chosen.add(token)
        elif token.isdigit() and int(token) in numbers:
            chosen.add(numbers[int(token)])
        else:
            raise ValueError(_bad_stages(token))
    if not chosen:
        raise ValueError(_bad_stages(spec))
    return [s for s in STAGES if s in chosen]


def _bad_stages(token: str) -> str:
    return (
        f"stages: {token!r} is not a stage or range; use e.g. '01-07', '01,02', 'all' "
        f"or names ({', '.join(STAGES)})"
    )


def find_notebooks_dir() -> Path:
    """`notebooks/` of the checkout the working directory is in, else of this source tree."""
    cwd = Path.cwd().resolve()
    source_tree = Path(__file__).resolve().parents[2]
    for base in (cwd, *cwd.parents, source_tree):
        if (base / "notebooks" / f"{STAGES[0]}.ipynb").is_file():
            return base / "notebooks"
    raise FileNotFoundError(
        "no notebooks/ directory found: run from a tunekit checkout or pass --notebooks DIR"
    )


def run_series(
    run: Run,
    stages: list[str],
    notebooks_dir: Path,
    overrides: dict[str, Any],
    console: Console,
    log_output: bool = False,
    kernel_env: Mapping[str, str] | None = None,
) -> list[StageResult]:
    """Execute `stages` into `<run>/notebooks/`; stop at the first failure. Each kernel gets
    `kernel_env` (the run dir's hold: `tunekit.run_lock.Lock.child_env`)."""
    import papermill as pm

    out_dir = run.dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[StageResult] = []
    for stage in stages:
        source, executed = notebooks_dir / f"{stage}.ipynb", out_dir / f"{stage}.ipynb"
        parameters = notebook_parameters(source, run, overrides)
        console.print(f"[bold]▶ {stage}[/] → {executed}")
        started = time.monotonic()
        with _StageProgress(console, stage, source) as progress, _kernel(kernel_env) as km:
            try:
                pm.execute_notebook(
                    str(source),
                    str(executed),
                    parameters=parameters,
                    km=km,
                    cwd=str(notebooks_dir),
                    kernel_name="python3",
                    progress_bar=False,
                    log_output=log_output,
                    request_save_on_cell_execute=True,
                    on_cell_start=progress.on_cell_start,
                )
                result = StageResult(stage, "ok", time.monotonic() - started, executed)
            except Exception as e:
                result = StageResult(
                    stage, "failed", time.monotonic() - started, executed, describe_failure(e)
                )
        results.append(result)
        run.state.update(
            "stages",
            {
                stage: {
                    "status": result.status,
                    "seconds": round(result.seconds, 1),
                    "notebook": str(executed),
                    "finished_at": datetime.now(UTC).isoformat(),
                    **({"error": result.error} if result.error else {}),
                }
            },
        )
        if result.status == "failed":
            console.print(f"[bold red]✗ {stage} failed[/] {result.error}")
            console.print(f"  executed notebook: {executed}")
            break
        console.print(f"[green]✓ {stage}[/] {result.seconds:.1f} s")
    return results


def notebook_parameters(source: Path, run: Run, overrides: dict[str, Any]) -> dict[str, Any]:
    """What papermill injects: the run, and each override as the notebook's own knob if it
    declares one (e.g. `max_steps` in 03), else inside its `settings` dict."""
    import papermill as pm

    declared = set(pm.inspect_notebook(str(source)))
    return {
        "run_dir": str(run.dir),
        "profile": run.settings.profile,
        **{k: v for k, v in overrides.items() if k in declared},
        "settings": {k: v for k, v in overrides.items() if k not in declared},
    }


@contextmanager
def _kernel(env: Mapping[str, str] | None = None) -> Iterator[Any]:
    """A kernel manager on local sockets (IPC): no TCP ports, no plain-text channel; its
    kernel knows it runs headless, and gets `env` (its kernelspec's `env`, which the launch
    applies)."""
    from jupyter_client.manager import KernelManager

    from tunekit.progress import HEADLESS_ENV

    with tempfile.TemporaryDirectory(prefix="tunekit-kernel-") as sockets:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=f"{sockets}/kernel")
        spec = km.kernel_spec
        if spec is None:
            raise RuntimeError("no python3 kernel: `make install` installs ipykernel")
        spec.env[HEADLESS_ENV] = "1"  # the kernel's progress: plain lines
        spec.env.update(env or {})
        try:
            yield km
        finally:  # nbclient leaves a kernel it was given running
            if km.has_kernel:
                km.shutdown_kernel(now=True)


def describe_failure(error: Exception) -> str:
    """'at cell In [3] `first line`: RuntimeError: ...' for a cell error; else the exception."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(error, PapermillExecutionError):
        first_line = next((line for line in error.source.splitlines() if line.strip()), "")
        return (
            f"at cell In [{error.exec_count}] `{first_line.strip()}`: {error.ename}: {error.evalue}"
        )
    return f"{type(error).__name__}: {error}"


class _StageProgress:
    """A live bar over a notebook's cells, titled with the section being run.

    On a terminal it animates; elsewhere (CI logs) the start and end lines say enough.
    """

    def __init__(self, console: Console, stage: str, source: Path):
        self.stage = stage
        self.total = len(nbformat.read(source, as_version=4).cells) + 1  # + injected parameters
        self.progress = Progress(
            SpinnerColumn(),
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self.task = self.progress.add_task(stage, total=self.total)

    def on_cell_start(self, cell: Any, cell_index: int) -> None:
        fields: dict[str, Any] = {"completed": cell_index}
        if cell.cell_type == "markdown" and cell.source.startswith("#"):
            heading = cell.source.splitlines()[0].lstrip("# ").strip()
            fields["description"] = f"{self.stage} · {heading[:50]}"
        self.progress.update(self.task, **fields)

    def __enter__(self) -> _StageProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.update(self.task, completed=self.total)
        self.progress.stop()
