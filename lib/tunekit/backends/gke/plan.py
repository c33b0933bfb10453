"""The gke plan (setting `dry_run`): the series of the gke profile with nothing executed.

`Plan` makes the same calls as `Gke`, with a shell that records each command instead of running
it and a cluster that is empty (no Secret, Job, CRD or GPU node yet): commands.sh, the manifests
and the Helm values are what a first real run on a new project would run and apply. What only a
live platform can answer (terraform's outputs, the fine-tune's result, MLflow) is recorded as
`dry-run`, and the readers of the Backend interface return None: there is nothing to read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tunekit.backends.gke import workloads
from tunekit.backends.gke.backend import Gke, planned_outputs
from tunekit.backends.gke.kube import JobOutcome, Kube
from tunekit.backends.gke.shell import Shell
from tunekit.run import Run

DRY = "dry-run"  # what the plan records where a real run records a live value


class EmptyCluster(Kube):
    """The Kubernetes API of a cluster that has nothing yet; applies are recorded by the shell
    only."""

    def __init__(self) -> None:
        pass  # no API client: nothing is ever sent

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
        return JobOutcome(DRY)

    def trainjob_job(
        self, namespace: str, name: str, timeout_s: float = 1800, poll_s: float = 10
    ) -> str:
        return f"{name}-node-0"


class Plan(Gke):
    """What `Gke` would do, recorded in `<run>/gke/` and printed; nothing runs."""

    def shell(self, run: Run, stage: str) -> Shell:
        return Shell(run, stage, record_only=True, kube=EmptyCluster())

    def live_value(self, value: Any) -> Any:
        return DRY

    def terraform_outputs(self, sh: Shell, run: Run, tf: list[str]) -> dict[str, Any]:
        sh.output([*tf, "output", "-json"])
        return planned_outputs(run)

    def port_forward(self, run: Run, name: str, target: str, port: int, health: str) -> str:
        """The in-cluster address: a plan starts no port-forward."""
        service = target.removeprefix("svc/")
        if service == "mlflow":
            return workloads.in_cluster_tracking_uri(run)
        return workloads.in_cluster_url(run, service)

    def mlflow_objects(self, run: Run, url: str) -> str:
        return DRY

    def open_ui(self, run: Run) -> dict[str, Any]:
        raise RuntimeError("a dry run has no MLflow to open: run the gke profile without dry_run")

    def read_secret(self, run: Run, name: str) -> dict[str, str]:
        raise RuntimeError(f"a dry run has no cluster to read Secret {name} from")

    def hf_token(self) -> str:
        """The token from the environment, or a stand-in: the plan shows the Secret's apply."""
        return super().hf_token() or DRY

    def finetune_result(self, sh: Shell, result_uri: str) -> dict[str, Any]:
        sh.output(["gcloud", "storage", "cat", result_uri])
        return {"mlflow_run_id": DRY, "model_uri": DRY, "steps": 0, "eval_loss": None}

    def register_model(self, run: Run) -> dict[str, Any]:
        """The alias the later stages serve, no version yet."""
        from tunekit.registry import CHAMPION, champion_uri

        s = run.settings
        print("dry run: no model registered (there is no MLflow to register it in)")
        return run.state.update(
            "registry",
            {
                "registered_model_name": s.registered_model_name,
                "version": DRY,
                "alias": CHAMPION,
                "model_uri": champion_uri(s),
                "run_id": s.pin_run_id or DRY,
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

        return f"{artifacts_destination(run)}/{DRY}/{run.settings.registered_model_name}"

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
