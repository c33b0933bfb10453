"""The gke plan (setting `dry_run`): the series of the gke profile with nothing executed.

`Plan` makes the same calls as `Gke`, with a shell that records each command instead of running
it and a cluster that is empty (no Secret, Job, CRD or GPU node yet): commands.sh, the manifests
and the Helm values are what a first real run on a new project would run and apply. The shell
answers what a live platform would: terraform's outputs from the variables (`planned_output`),
no fine-tune result yet, and `dry-run` for what only a live platform has (the GPUs ready, the
experiment's id); the readers of the Backend interface return None: there is nothing to read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

from tunekit.backends.gke import workloads
from tunekit.backends.gke.backend import Gke
from tunekit.backends.gke.kube import JobOutcome
from tunekit.backends.gke.shell import PLANNED, Shell
from tunekit.backends.gke.terraform import planned_outputs
from tunekit.records import RegistryRecord
from tunekit.run import Run

# what `gcloud storage cat` of the fine-tune's result.json would print
PLANNED_RESULT = {"mlflow_run_id": PLANNED, "model_uri": PLANNED, "steps": 0, "eval_loss": None}


def planned_output(run: Run, argv: list[str]) -> str:
    """What a command whose output the gke stages read would print on a new project:
    terraform's outputs (known from the variables), the fine-tune's result (none yet)."""
    if argv[0] == "terraform" and argv[-2:] == ["output", "-json"]:
        return json.dumps({k: {"value": v} for k, v in planned_outputs(run).items()})
    if argv[:3] == ["gcloud", "storage", "cat"]:
        return json.dumps(PLANNED_RESULT)
    return ""


class EmptyCluster:
    """The Kubernetes API (`Cluster`) of a cluster that has nothing yet; applies are recorded
    by the shell only, nothing is ever sent."""

    def log_tail(self, namespace: str, pod: str, container: str, lines: int = 30) -> str:
        return ""

    def events(self, namespace: str, names: list[str]) -> str:
        return ""

    def apply(self, obj: dict[str, Any]) -> None:
        return None

    def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return None

    def exists(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        return False

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        return None

    def jobs(self, namespace: str, selector: str) -> list[Any]:
        return []

    def volume_claims(self, namespace: str) -> dict[str, str]:
        return {}

    def gpus(self, accelerator: str) -> int:
        return 0

    def follow_job(
        self,
        namespace: str,
        name: str,
        container: str,
        on_line: Callable[[str], None] = print,
        on_status: Callable[[str], None] = lambda status: None,
        schedule_timeout_s: float = 1800,
        poll_s: float = 10,
        pod_selector: str = "",
    ) -> JobOutcome:
        return JobOutcome(PLANNED)

    def trainjob_job(
        self, namespace: str, name: str, timeout_s: float = 1800, poll_s: float = 10
    ) -> str:
        return f"{name}-node-0"


class Plan(Gke):
    """What `Gke` would do, recorded in `<run>/gke/` and printed; nothing runs."""

    def shell(self, run: Run, stage: str) -> Shell:
        return Shell(run, stage, record_only=True, kube=EmptyCluster(),
                     planned=partial(planned_output, run))  # fmt: skip

    def port_forward(self, run: Run, name: str, target: str, port: int, health: str) -> str:
        """The in-cluster address: a plan starts no port-forward."""
        service = target.removeprefix("svc/")
        if service == "mlflow":
            return workloads.in_cluster_tracking_uri(run)
        return workloads.in_cluster_url(run, service)

    def open_ui(self, run: Run) -> dict[str, Any]:
        raise RuntimeError("a dry run has no MLflow to open: run the gke profile without dry_run")

    def read_secret(self, run: Run, name: str) -> dict[str, str]:
        raise RuntimeError(f"a dry run has no cluster to read Secret {name} from")

    def register_model(self, run: Run) -> RegistryRecord:
        """The alias the later stages serve, no version yet."""
        from tunekit.registry import CHAMPION, champion_uri

        s = run.settings
        print("dry run: no model registered (there is no MLflow to register it in)")
        return run.state.update(
            "registry",
            {
                "registered_model_name": s.registered_model_name,
                "version": PLANNED,
                "alias": CHAMPION,
                "champion_version": PLANNED,
                "model_uri": champion_uri(s),
                "run_id": s.pin_run_id or PLANNED,
                "pinned": bool(s.pin_run_id),
                "created": False,
                "score": float("nan"),
                "tuned_execution_accuracy": float("nan"),
                "validation_tuned_execution_accuracy": float("nan"),
                "ui_url": f"{run.state.section('mlflow').get('ui_url', '')} (dry run)",
            },
        )

    def storage_uri(self, run: Run, version: str) -> str:
        from tunekit.tracking import artifacts_destination

        name = run.settings.registered_model_name
        return f"{artifacts_destination(run)}/{PLANNED}/{name}" + (
            "" if version == PLANNED else f"-v{version}"
        )

    # the readers: nothing to read

    def tracking_client(self, run: Run) -> None:
        return None

    def storage_client(self, run: Run) -> None:
        return None

    def training_rows(self, run: Run) -> None:
        print(f"dry run: {run.settings.dataset} is not read (the Job reads it)")
        return None

    def ask(self, run: Run, endpoint: str, body: dict[str, Any]) -> None:
        print(f"dry run: {endpoint} is not asked (nothing was deployed)")
        return None
