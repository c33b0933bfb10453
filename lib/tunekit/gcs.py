"""Google Cloud Storage: the local emulator, the client, the bucket."""

from __future__ import annotations

import sys

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from tunekit.run import Run
from tunekit.services import ServiceSpec


def emulator_spec(run: Run) -> ServiceSpec:
    """gcp-storage-emulator keeping its objects on disk under the run dir."""
    data_dir = run.dir / "gcs"
    return ServiceSpec(
        name="gcs-emulator",
        command=[
            sys.executable,
            "-m",
            "gcp_storage_emulator",
            "--data-dir",
            str(data_dir),
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
        ],
        health_path="/storage/v1/b",
    )


def emulator_endpoint(run: Run) -> str:
    """The GCS emulator's URL that stage 01 recorded (profile local)."""
    endpoint = run.state.section("cluster").get("endpoints", {}).get("gcs")
    if not endpoint:
        raise RuntimeError("no GCS emulator recorded for this run: run stage 01-cluster first")
    return endpoint


def storage_client(run: Run) -> storage.Client:
    """A real google-cloud-storage client for the run: the emulator locally, GCS on GKE."""
    if run.settings.profile == "local":
        return storage.Client(
            project=run.settings.project_id or "local",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=emulator_endpoint(run)),
        )
    return storage.Client(project=run.settings.project_id)


def ensure_bucket(client: storage.Client, name: str, location: str | None = None) -> str:
    """Create bucket `name` unless it exists; returns its gs:// URL."""
    bucket = client.bucket(name)
    if not bucket.exists():
        client.create_bucket(bucket, location=location)
    return f"gs://{name}"
