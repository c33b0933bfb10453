"""The one interface of the backends: what the stages, the notebooks and `tunekit ui` ask of a
platform. `Local`, `Gke` and the gke `Plan` implement it (the type checker confirms it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import requests

from tunekit.records import (
    CleanupRecord,
    ClusterRecord,
    FinetuneRecord,
    MlflowRecord,
    RegistryRecord,
    ServingRecord,
    SweepRecord,
)
from tunekit.run import Run

if TYPE_CHECKING:
    from google.cloud.storage import Client as StorageClient
    from mlflow import MlflowClient

    from tunekit.sweep import Sweep

Rows = list[dict[str, str]]


@runtime_checkable
class Backend(Protocol):
    """A platform the series runs on. Stage operations return what they recorded in the run's
    state; the readers return None where the backend has nothing to read (a plan)."""

    profile: str

    def create_cluster(self, run: Run) -> ClusterRecord: ...
    def start_mlflow(self, run: Run) -> MlflowRecord: ...
    def finetune(self, run: Run) -> FinetuneRecord: ...
    def sweep(self, run: Run, sweep: Sweep) -> SweepRecord:
        """Stage 03's search: the trials of `sweep` as child runs of its MLflow parent run."""
        ...

    def register_model(self, run: Run) -> RegistryRecord: ...
    def deploy_simple(self, run: Run) -> ServingRecord: ...
    def deploy_kserve(self, run: Run) -> ServingRecord: ...
    def cleanup(self, run: Run) -> CleanupRecord: ...

    def open_ui(self, run: Run) -> dict[str, Any]:
        """Make the MLflow UI of the run reachable again (without re-running its stages):
        `ui_url`, and `started`, the names of the processes started for it."""
        ...

    def read_secret(self, run: Run, name: str) -> dict[str, str]:
        """Credential `name` of the run (e.g. MLflow's admin login)."""
        ...

    def tracking_client(self, run: Run) -> MlflowClient | None:
        """An MLflow client of the run's server, logged in as the admin."""
        ...

    def storage_client(self, run: Run) -> StorageClient | None:
        """A google-cloud-storage client of the run's bucket."""
        ...

    def training_rows(self, run: Run) -> tuple[Rows, Rows] | None:
        """The (train, eval) rows the fine-tune uses."""
        ...

    def ask(self, run: Run, endpoint: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST `body` to a deployed server's `endpoint`; its JSON answer."""
        ...


class LivePlatform:
    """What `Local` and `Gke` share: a tracking server, a bucket, servers to ask."""

    def tracking_client(self, run: Run) -> MlflowClient | None:
        from tunekit import credentials, tracking

        return tracking.logged_in_client(run, self.read_secret(run, credentials.ADMIN))

    def read_secret(self, run: Run, name: str) -> dict[str, str]:
        raise NotImplementedError

    def register_model(self, run: Run) -> RegistryRecord:
        """Register the best fine-tune (or `pin_run_id`) with alias `champion`."""
        from tunekit.registry import register_best

        client = self.tracking_client(run)
        assert client is not None
        return register_best(run, client)

    def training_rows(self, run: Run) -> tuple[Rows, Rows] | None:
        from tunekit.splits import load_splits

        return load_splits(run.settings)

    def ask(self, run: Run, endpoint: str, body: dict[str, Any]) -> dict[str, Any] | None:
        response = requests.post(endpoint, json=body, timeout=120)
        response.raise_for_status()
        return response.json()
