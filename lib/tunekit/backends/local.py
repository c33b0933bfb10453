"""Profile `local`: the platform as processes on this machine (GCS emulator, MLflow server)."""

from __future__ import annotations

from typing import Any

from tunekit import credentials, finetune_job, gcs, postgres, serving, tracking
from tunekit.run import Run
from tunekit.services import ensure_service, running_services, stop_all


def create_cluster(run: Run) -> dict[str, Any]:
    """Start the GCS emulator (objects under the run dir) and create the bucket."""
    emulator = ensure_service(run, gcs.emulator_spec(run))
    run.state.update("cluster", {"profile": "local", "endpoints": {"gcs": emulator["url"]}})
    bucket_url = gcs.ensure_bucket(gcs.storage_client(run), run.settings.bucket)
    return run.state.update(
        "cluster",
        {"bucket": run.settings.bucket, "bucket_url": bucket_url, "reused": emulator["reused"]},
    )


def start_mlflow(run: Run) -> dict[str, Any]:
    """Start `mlflow server` (basic auth, proxied artifacts in the bucket; SQLite, or
    PostgreSQL with `mlflow_backend=postgresql`); get the experiment and the reader user."""
    endpoint = gcs.emulator_endpoint(run)
    database = None
    if run.settings.mlflow_backend == "postgresql":
        db = ensure_service(run, postgres.server_spec(run))
        postgres.ensure_databases(run, db["port"])
        database = postgres.environment(run, db["port"])
    server = ensure_service(run, tracking.mlflow_server_spec(run, endpoint, database))
    tracking.use_login(run)
    experiment_id = tracking.ensure_experiment(server["url"], run.settings.experiment_name)
    secrets = credentials.LocalSecrets(run.dir)
    tracking.ensure_reader(
        server["url"], secrets.ensure(credentials.ADMIN), secrets.ensure(credentials.READER)
    )
    return run.state.update(
        "mlflow",
        {
            "tracking_uri": server["url"],
            "ui_url": f"{server['url']}/#/experiments/{experiment_id}",
            "experiment_name": run.settings.experiment_name,
            "experiment_id": experiment_id,
            "artifacts_destination": tracking.artifacts_destination(run),
            "backend": run.settings.mlflow_backend,
            "login": {
                "username": credentials.USERNAMES[credentials.ADMIN],
                "password_in": str(secrets.path),
            },
            "reused": server["reused"],
        },
    )


def read_secret(run: Run, name: str) -> dict[str, str]:
    """Credential `name` from the run's secrets file (stage 02 creates them)."""
    found = credentials.LocalSecrets(run.dir).get(name)
    if found is None:
        raise RuntimeError(f"no credential {name!r} for run {run.id}: run stage 02-mlflow first")
    return found


def finetune(run: Run) -> dict[str, Any]:
    """Run `python -m tunekit.train` as a subprocess; resume it if it stopped half-way."""
    return finetune_job.run_local(run, tracking.tracking_uri(run))


def deploy_simple(run: Run) -> dict[str, Any]:
    """Start (or reuse) `tunekit.serve` under uvicorn on the champion; wait until it is ready."""
    server = ensure_service(run, serving.fastapi_spec(run))
    return run.state.update(
        "serving",
        {
            "fastapi": {
                "url": server["url"],
                "model_uri": serving.champion_uri(run),
                "model_version": serving.champion_version(run),
                "docs": f"{server['url']}/docs",
                "reused": server["reused"],
            }
        },
    )


def deploy_kserve(run: Run) -> dict[str, Any]:
    """Start (or reuse) MLServer with the MLflow runtime on the champion (Open Inference V2)."""
    server = ensure_service(run, serving.mlserver_spec(run))
    name = run.settings.registered_model_name
    return run.state.update(
        "serving",
        {
            "mlserver": {
                "url": server["url"],
                "infer_url": f"{server['url']}/v2/models/{name}/infer",
                "model_uri": serving.champion_uri(run),
                "model_version": serving.champion_version(run),
                "reused": server["reused"],
            }
        },
    )


def cleanup(run: Run) -> dict[str, Any]:
    """Stop every service the state records; the run dir (data, logs) stays for `tunekit ui`."""
    stopped = stop_all(run)
    return run.state.update(
        "cleanup",
        {
            "stopped": stopped,
            "still_running": sorted(running_services(run)),
        },
    )
