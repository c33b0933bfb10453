"""The local fine-tune: the gke profile's Job container as a subprocess, in `<run>/finetune/<job>`.

A job is named by a digest of the training settings (`Settings.finetune_job`), so re-running the
stage with the same settings reuses the finished job (or resumes an unfinished one), and changed
settings start a new job: a new MLflow run next to the earlier ones.

One fine-tune per run dir at a time (its caller, `Local.finetune`, holds `run_lock.exclusive`).
A trainer left running by a kernel that died is stopped before the job resumes from its last
complete checkpoint: its output went to a pipe that nobody reads, so nobody could follow it,
and it would die on its next line anyway.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import psutil

from tunekit import distributed
from tunekit.backends import containers
from tunekit.credentials import LocalSecrets, child_environment
from tunekit.local_services import log_tail, terminate_groups
from tunekit.progress import TrainingProgress
from tunekit.records import FinetuneRecord, FinetuneResult
from tunekit.run import Run
from tunekit.state import write_atomic
from tunekit.train import RESULT_FILE

MODELS_DIR_ENV = "TUNEKIT_MODELS_DIR"


def job_dir(run: Run) -> Path:
    """`<run>/finetune/<job>`: the job of the run's training settings (`finetune_job`)."""
    return run.dir / "finetune" / run.settings.finetune_job


def models_cache() -> Path:
    """Where base models placed here (tiny-gemma2) are kept for every run: $TUNEKIT_MODELS_DIR,
    else ~/.cache/tunekit/models. A copy is named by a digest of its files: runs share it."""
    found = os.environ.get(MODELS_DIR_ENV)
    return Path(found).expanduser() if found else Path.home() / ".cache" / "tunekit" / "models"


def _link_models(run: Run) -> None:
    """The workspace's `models/` (the Job's --models-dir) is the shared cache here."""
    link, cache = run.dir / "models", models_cache()
    cache.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink() and not link.exists():
        link.symlink_to(cache, target_is_directory=True)


def run_local(run: Run, tracking_uri: str) -> FinetuneRecord:
    """Train in a subprocess (streaming its progress lines), or reuse the finished result.
    The caller holds the run dir (`run_lock.exclusive`): no other trainer can start on it."""
    job = job_dir(run)
    stop_orphans(run)
    if (result := read_result(job)) is not None:
        return _record(run, job, result, reused=True)
    if (job / RESULT_FILE).exists():
        print(f"{job / RESULT_FILE} cannot be read: resuming the job", flush=True)
    return _train(run, job, tracking_uri)


def read_result(job: Path) -> FinetuneResult | None:
    """The finished job's result; None if it has none, or one that does not parse (cut short
    by a crash): the job is then not finished."""
    try:
        result = json.loads((job / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    finished = isinstance(result, dict) and "mlflow_run_id" in result
    return cast(FinetuneResult, result) if finished else None


def trainers(run: Run) -> list[psutil.Process]:
    """The trainers running on this run's jobs (found by the job dir on their command line,
    so neither a reused pid nor a trainer the state never recorded misleads it)."""
    jobs = f"{run.dir / 'finetune'}{os.sep}"
    found = {}
    for proc in psutil.process_iter(["cmdline", "status"]):
        argv = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE or "tunekit.train" not in argv:
            continue
        if any(arg.startswith(jobs) for arg in argv):
            found[proc.pid] = proc
    leaders = []
    for proc in found.values():  # a trainer's own workers stop with it
        try:
            if proc.ppid() not in found:
                leaders.append(proc)
        except psutil.NoSuchProcess:
            continue
    return leaders


def stop_orphans(run: Run, timeout: float = 15.0) -> list[int]:
    """Stop the trainers still running on this run's jobs. Called under the run dir's lock,
    where no kernel follows one: their kernel died. Their jobs resume on the next start."""
    found = trainers(run)
    terminate_groups([(p, signal.SIGTERM) for p in found], timeout)
    if left := trainers(run):
        raise RuntimeError(
            f"trainer pid {left[0].pid} of run {run.id} does not stop; stop it, then re-run "
            "the stage"
        )
    for proc in found:
        print(
            f"Stopped trainer pid {proc.pid}, left running by a kernel that died; its job "
            "resumes from its last complete checkpoint.",
            flush=True,
        )
    return [p.pid for p in found]


def _train(run: Run, job: Path, tracking_uri: str) -> FinetuneRecord:
    job.mkdir(parents=True, exist_ok=True)
    write_atomic(job / "config.yaml", run.settings.to_yaml())
    _link_models(run)
    resume = (job / "checkpoints").is_dir()
    # The container of the gke profile's Job, run here: its config volume is the job dir, its
    # workspace the run dir (the models cache too, where one is set)
    # (more than one process: torchrun on this machine alone, `--standalone`)
    process = containers.finetune(run, job.name, tracking_uri).process(
        {containers.CONFIG: str(job), containers.WORKSPACE: str(run.dir)},
        LocalSecrets(run.dir).value,
        overrides=distributed.standalone_env(run.settings)
        if distributed.launched(run.settings)
        else None,
    )
    log = run.logs_dir / f"finetune-{job.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    returncode = _stream(run, process.argv, child_environment(process.env), log, job, resume)
    result = read_result(job)
    if returncode != 0 or result is None:
        run.state.update("finetune", {"status": "failed", "job": job.name, "pid": None})
        why = f"exit code {returncode}" + ("" if returncode else f", no readable {RESULT_FILE}")
        raise RuntimeError(
            f"fine-tune {job.name} failed ({why}); re-run the stage to resume "
            f"from its last checkpoint. Last lines of {log}:\n{log_tail(log, 15)}"
        )
    return _record(run, job, result, reused=False)


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
                "create_time": _create_time(proc.pid),
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


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


def _record(run: Run, job: Path, result: FinetuneResult, reused: bool) -> FinetuneRecord:
    return run.state.update(
        "finetune",
        {
            **result,
            "status": "finished",
            "job": job.name,
            "job_dir": str(job),
            "reused": reused,
            "pid": None,
            "create_time": None,
        },
    )
