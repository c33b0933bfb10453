"""MLflow: the tracking server, the experiment, and a check that artifacts reach the bucket."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from tunekit.run import Run, skipped_in_dry_run
from tunekit.services import ServiceSpec

ARTIFACT_PREFIX = "mlflow"
CHECK_EXPERIMENT = "tunekit-platform-checks"


def mlflow_server_spec(run: Run, gcs_endpoint: str) -> ServiceSpec:
    """`mlflow server`: SQLite backend in the run dir, artifacts proxied to the bucket."""
    db = run.dir / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return ServiceSpec(
        name="mlflow",
        command=[
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            artifacts_destination(run),
        ],
        health_path="/health",
        env={
            "STORAGE_EMULATOR_HOST": gcs_endpoint,
            # The GenAI job runner (a dozen huey workers, ~2 GB) is not used by tunekit.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        },
    )


def artifacts_destination(run: Run) -> str:
    return f"gs://{run.settings.bucket}/{ARTIFACT_PREFIX}"


def tracking_uri(run: Run) -> str:
    """The tracking URI stage 02 recorded."""
    uri = run.state.section("mlflow").get("tracking_uri")
    if not uri:
        raise RuntimeError("no MLflow server recorded for this run: run stage 02-mlflow first")
    return uri


def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment `name`, created if missing."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def verify_artifact_store(run: Run) -> dict[str, Any]:
    """Log a small artifact through the server and find it as a blob in the bucket.

    The check run goes to its own experiment so that it never competes with fine-tunes.
    """
    from mlflow import MlflowClient

    from tunekit.gcs import storage_client

    if skipped_in_dry_run(run, "the artifact check"):
        return {"dry_run": True}
    client = MlflowClient(tracking_uri(run))
    experiment_id = ensure_experiment(client.tracking_uri, CHECK_EXPERIMENT)
    mlflow_run = client.create_run(experiment_id, run_name=f"artifact-check-{run.id}")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.txt"
        probe.write_text(f"tunekit run {run.id}\n")
        client.log_artifact(mlflow_run.info.run_id, str(probe))
    client.set_terminated(mlflow_run.info.run_id)
    prefix = f"{ARTIFACT_PREFIX}/{experiment_id}/{mlflow_run.info.run_id}/"
    blobs = [b.name for b in storage_client(run).list_blobs(run.settings.bucket, prefix=prefix)]
    if not blobs:
        raise RuntimeError(
            f"MLflow accepted an artifact but no blob appeared under "
            f"gs://{run.settings.bucket}/{prefix}: check the server's --artifacts-destination"
        )
    return {"mlflow_run_id": mlflow_run.info.run_id, "blobs": blobs}
