"""The fine-tune's Job on the cluster: which attempt to use, and following it to its end
(its training logs shown and kept, its outcome as the stage's)."""

from __future__ import annotations

from typing import Any

from tunekit import distributed
from tunekit.backends.gke import workloads
from tunekit.backends.gke.kube import COMPLETION_INDEX_LABEL, JobFailed, job_outcome
from tunekit.backends.gke.shell import Shell
from tunekit.progress import TrainingProgress
from tunekit.run import Run


def current_attempt(sh: Shell, run: Run, job: str) -> tuple[str, int, str | None]:
    """The Job to use for fine-tune `job`: (name, attempt, "complete" | "active" | None),
    None meaning a new attempt is to be applied."""
    previous = sh.kube.jobs(run.settings.namespace, f"{workloads.FINETUNE_LABEL}={job}")
    attempts = {attempt_of(j): j for j in previous}  # a TrainJob's: its JobSet's Job
    if not attempts:
        return f"{job}-1", 1, None
    last = max(attempts)
    outcome = job_outcome(attempts[last])
    if outcome is None:
        print(f"fine-tune Job {job}-{last} is still running: following it")
        return f"{job}-{last}", last, "active"
    if outcome.status == "complete":
        print(f"fine-tune Job {job}-{last} finished already: its result is reused")
        return f"{job}-{last}", last, "complete"
    print(f"fine-tune Job {job}-{last} failed ({outcome.reason}): attempt {last + 1} "
          "resumes from its last checkpoint")  # fmt: skip
    return f"{job}-{last + 1}", last + 1, None


def follow(sh: Shell, run: Run, name: str) -> None:
    """Stream the Job's training logs (progress lines shown, all in logs/) until it ends."""
    s = run.settings
    if distributed.launched(s):
        sh.note(f"kubectl logs -f -l={COMPLETION_INDEX_LABEL}=0,jobset.sigs.k8s.io/"
                f"jobset-name={name} -c node -n={s.namespace}, then the condition Complete "
                f"or Failed of Job {name}-node-0 (followed through the API)")  # fmt: skip
    else:
        sh.note(f"kubectl logs -f job/{name} -c train -n={s.namespace}, then the Job's "
                "condition Complete or Failed (followed through the API)")  # fmt: skip
    log = run.logs_dir / f"finetune-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)

    def status(now: str) -> None:
        run.state.update("finetune", {"status": now, "job": name, "log": str(log)})
        print(f"fine-tune Job {name}: {now}", flush=True)

    with log.open("a") as out, TrainingProgress(f"fine-tune {name}") as progress:

        def line(text: str) -> None:
            out.write(text + "\n")
            out.flush()
            progress.feed(text)

        try:
            if distributed.launched(s):  # the main process's lines: node 0's pod
                job = sh.kube.trainjob_job(s.namespace, name, s.schedule_timeout_s)
                sh.kube.follow_job(s.namespace, job, workloads.TRAINER_CONTAINER,
                                   on_line=line, on_status=status,
                                   schedule_timeout_s=s.schedule_timeout_s,
                                   pod_selector=f"{COMPLETION_INDEX_LABEL}=0")  # fmt: skip
            else:
                sh.kube.follow_job(s.namespace, name, "train", on_line=line,
                                   on_status=status,
                                   schedule_timeout_s=s.schedule_timeout_s)  # fmt: skip
        except JobFailed as e:
            run.state.update("finetune", {"status": "failed", "job": name})
            raise RuntimeError(
                f"{e}\nRe-run stage 03 to start a new attempt that resumes from the last "
                f"checkpoint (full log: {log})"
            ) from None


def attempt_of(job: Any) -> int:
    """A fine-tune Job's attempt: its label, else (Jobs of earlier kits) its name's end."""
    labels = job.metadata.labels or {}
    return int(labels.get(workloads.ATTEMPT_LABEL) or job.metadata.name.rsplit("-", 1)[1])
