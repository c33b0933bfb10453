"""A fine-tune job: its directory, its config, and running `tunekit.train` locally.

A job is named by a digest of the settings that shape the model, so re-running the stage with the
same settings reuses the finished job (or resumes an unfinished one), and changed settings start a
new job: a new MLflow run next to the earlier ones.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tunekit import workloads
from tunekit.credentials import LocalSecrets, child_environment
from tunekit.progress import TrainingProgress
from tunekit.run import Run
from tunekit.services import log_tail
from tunekit.train import RESULT_FILE

# Settings that do not change what is trained.
_NOT_TRAINING = {
    *("profile", "project_id", "region", "cluster_name", "bucket", "service_timeout_s"),
    *("dry_run", "namespace", "gpu_type", "gpu_machine_type", "gpu_spot", "image_tag"),
    *("mlflow_backend", "job_deadline_h", "schedule_timeout_s"),
}
PROGRESS_PREFIXES = ("step ", "tunekit: ")  # the lines of the trainer's output shown live


def job_dir(run: Run) -> Path:
    """`<run>/finetune/ft-<digest>` for the run's current training settings."""
    shaping = {k: v for k, v in run.settings.model_dump().items() if k not in _NOT_TRAINING}
    digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:10]
    return run.dir / "finetune" / f"ft-{digest}"


def config_yaml(run: Run) -> str:
    """The job's settings file (`tunekit.train --config`): all settings of the run."""
    return yaml.safe_dump(run.settings.model_dump(), sort_keys=False)


def run_local(run: Run, tracking_uri: str) -> dict[str, Any]:
    """Train in a subprocess (streaming its progress lines), or reuse the finished result."""
    job = job_dir(run)
    result_file = job / RESULT_FILE
    if result_file.is_file():
        return _record(run, job, json.loads(result_file.read_text()), reused=True)
    job.mkdir(parents=True, exist_ok=True)
    config = config_yaml(run)
    (job / "config.yaml").write_text(config)
    resume = (job / "checkpoints").is_dir()
    # The Job the gke profile applies, run here: /etc/tunekit is the job dir, /workspace the run's
    objects = workloads.finetune_job(run, job.name, tracking_uri, config)
    process = workloads.as_process(
        workloads.container_of(objects, "Job"),
        mounts={workloads.CONFIG_DIR: str(job), workloads.WORKSPACE: str(run.dir)},
        secrets=LocalSecrets(run.dir).value,
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
        progress = TrainingProgress(f"fine-tune {job.name}")
        try:
            for line in proc.stdout:
                out.write(line)
                if line.startswith(PROGRESS_PREFIXES):
                    progress.line(line.rstrip())
            return proc.wait()
        except BaseException:  # an interrupted cell stops the training too
            proc.terminate()
            proc.wait(30)
            raise
        finally:
            progress.close()


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
