"""The local fine-tune: the gke profile's Job container as a subprocess, in `<run>/finetune/<job>`.

A job is named by a digest of the training settings (`Settings.finetune_job`), so re-running the
stage with the same settings reuses the finished job (or resumes an unfinished one), and changed
settings start a new job: a new MLflow run next to the earlier ones.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunekit.backends import containers
from tunekit.credentials import LocalSecrets, child_environment
from tunekit.progress import TrainingProgress
from tunekit.run import Run
from tunekit.services import log_tail
from tunekit.train import RESULT_FILE

MODELS_DIR_ENV = "TUNEKIT_MODELS_DIR"


def job_dir(run: Run) -> Path:
    """`<run>/finetune/<job>`: the job of the run's training settings (`finetune_job`)."""
    return run.dir / "finetune" / run.settings.finetune_job


def models_cache() -> Path:
    """Where base models built here (tiny-gemma2) are kept for every run: $TUNEKIT_MODELS_DIR,
    else ~/.cache/tunekit/models. A build is keyed by its recipe and data, so runs share it."""
    found = os.environ.get(MODELS_DIR_ENV)
    return Path(found).expanduser() if found else Path.home() / ".cache" / "tunekit" / "models"


def _link_models(run: Run) -> None:
    """The workspace's `models/` (the Job's --models-dir) is the shared cache here."""
    link, cache = run.dir / "models", models_cache()
    cache.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink() and not link.exists():
        link.symlink_to(cache, target_is_directory=True)


def run_local(run: Run, tracking_uri: str) -> dict[str, Any]:
    """Train in a subprocess (streaming its progress lines), or reuse the finished result."""
    job = job_dir(run)
    result_file = job / RESULT_FILE
    if result_file.is_file():
        return _record(run, job, json.loads(result_file.read_text()), reused=True)
    job.mkdir(parents=True, exist_ok=True)
    (job / "config.yaml").write_text(run.settings.to_yaml())
    _link_models(run)
    resume = (job / "checkpoints").is_dir()
    # The container of the gke profile's Job, run here: its config volume is the job dir, its
    # workspace the run dir (the models cache too, where one is set)
    process = containers.finetune(run, job.name, tracking_uri).process(
        {containers.CONFIG: str(job), containers.WORKSPACE: str(run.dir)},
        LocalSecrets(run.dir).value,
    )
    log = run.logs_dir / f"finetune-{job.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    returncode = _stream(run, process.argv, child_environment(process.env), log, job, resume)
    if returncode != 0 or not result_file.is_file():
        run.state.update("finetune", {"status": "failed", "job": job.name})
        raise RuntimeError(
            f"fine-tune {job.name} failed (exit code {returncode}); re-run the stage to resume "
            f"from its last checkpoint. Last lines of {log}:\n{log_tail(log, 15)}"
        )
    return _record(run, job, json.loads(result_file.read_text()), reused=False)


def _stream(
    run: Run, command: list[str], env: dict[str, str], log: Path, job: Path, resume: bool
) -> int:
    """Run `command`; everything goes to `log`, progress lines to stdout too."""
    with log.open("a") as out:
        out.write(f"\n--- {datetime.now(UTC).isoformat()} {' '.join(command)}\n")
        out.flush()
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            bufsize=1,
        )
        run.state.update(
            "finetune",
            {
                "status": "running",
                "job": job.name,
                "pid": proc.pid,
                "job_dir": str(job),
                "log": str(log),
            },
        )
        print(
            f"{'Resuming' if resume else 'Starting'} fine-tune {job.name} "
            f"(pid {proc.pid}, log {log})",
            flush=True,
        )
        with TrainingProgress(f"fine-tune {job.name}") as progress:
            try:
                for line in proc.stdout or []:
                    out.write(line)
                    progress.feed(line)
                return proc.wait()
            except BaseException:  # an interrupted cell stops the training too
                proc.terminate()
                proc.wait(30)
                raise


def _record(run: Run, job: Path, result: dict[str, Any], reused: bool) -> dict[str, Any]:
    return run.state.update(
        "finetune",
        {
            **result,
            "status": "finished",
            "job": job.name,
            "job_dir": str(job),
            "reused": reused,
            "pid": None,
        },
    )
