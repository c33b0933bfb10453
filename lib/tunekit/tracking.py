"""MLflow: the tracking server, its login, the experiment, and a check that artifacts reach the
bucket.

MLflow runs as on the cluster, everywhere: the basic-auth app with an admin generated per run,
the arguments the community-charts/mlflow chart renders from the kit's values, the schema
migrated by the server's own MLflow before it starts, and a read-only user for the model
servers. Every stage that talks to MLflow logs in itself (`logged_in_client`), from the run's
credentials: a kernel or a process never inherits a login from an earlier stage.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import requests

from tunekit import credentials
from tunekit.run import Run

ARTIFACT_PREFIX = "mlflow"
CHECK_EXPERIMENT = "tunekit-platform-checks"
# Every authenticated user may read (the reader); only the admin writes. An unauthenticated
# request is a 401. The chart's `auth.defaultPermission`, the local ini's `default_permission`.
DEFAULT_PERMISSION = "READ"
AUTH_APP = "basic-auth"
# MLflow's two PostgreSQL databases (the cluster's, and the local one with -p mlflow_backend=...)
TRACKING_DATABASE, AUTH_DATABASE = "mlflow", "mlflow_auth"
AUTHORIZATION_FUNCTION = "mlflow.server.auth:authenticate_request_basic_auth"
# How long the server trusts a checked login (MLflow 3.17 auth/basic_auth.ini: off by default;
# a password change reaches the other workers after at most this long)
AUTH_CACHE_TTL_S = 60


def artifacts_destination(run: Run) -> str:
    return f"gs://{run.settings.bucket}/{ARTIFACT_PREFIX}"


def ui_url(tracking_uri: str, experiment_id: str = "", path: str = "") -> str:
    """The MLflow UI's page of an experiment (or `path` in it, e.g. `runs/<id>`)."""
    page = f"experiments/{experiment_id}" if experiment_id else "experiments"
    return f"{tracking_uri}/#/{page}" + (f"/{path}" if path else "")


def model_version_url(tracking_uri: str, name: str, version: str | int) -> str:
    return f"{tracking_uri}/#/models/{name}/versions/{version}"


def allowed_hosts(run: Run) -> list[str]:
    """Host headers the server accepts (MLflow >= 3.5 rejects others): the in-cluster names
    and loopback (port-forwards, the local profile), each with any port."""
    host = f"mlflow.{run.settings.namespace}"
    names = [host, f"{host}.svc", f"{host}.svc.cluster.local", "localhost", "127.0.0.1"]
    return [h for name in names for h in (name, f"{name}:*")]


def extra_args(run: Run) -> dict[str, str]:
    """The chart's `extraArgs`: each becomes `--<kebab-case key>=<value>`."""
    workers = "2" if run.settings.profile == "gke" else "1"  # two cores here: one worker
    return {"allowedHosts": ",".join(allowed_hosts(run)), "workers": workers}


def auth_ini(database_uri: str) -> str:
    """The basic-auth app's configuration: no password in it (the admin's comes from the
    environment, MLFLOW_AUTH_ADMIN_PASSWORD, as MLflow 3.17's auth/config.py reads it).

    Its credential cache is on (AUTH_CACHE_TTL_S): without it the server checks the password
    hash on every request, about 0.5 s each on two busy cores, and a fine-tune's end (the
    model's metric histories, one request per metric) took 35 s of that."""
    return (
        "[mlflow]\n"
        f"default_permission = {DEFAULT_PERMISSION}\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {credentials.USERNAMES[credentials.ADMIN]}\n"
        f"authorization_function = {AUTHORIZATION_FUNCTION}\n"
        f"auth_cache_ttl_seconds = {AUTH_CACHE_TTL_S}\n"
    )


def tracking_uri(run: Run) -> str:
    """The tracking URI stage 02 recorded."""
    uri = run.state.section("mlflow").get("tracking_uri")
    if not uri:
        raise RuntimeError("no MLflow server recorded for this run: run stage 02-mlflow first")
    return uri


def log_in(found: dict[str, str]) -> None:
    """Log this process's MLflow client in as `found` (a credential: username, password);
    MLflow reads MLFLOW_TRACKING_USERNAME/PASSWORD."""
    user, password = credentials.LOGIN_VARIABLES
    os.environ[user], os.environ[password] = found["username"], found["password"]


def logged_in_client(run: Run, admin: dict[str, str]) -> Any:
    """An MlflowClient of the run's tracking server, this process logged in as `admin`."""
    from mlflow import MlflowClient

    log_in(admin)
    return MlflowClient(tracking_uri(run))


# The MLflow 3 UI shows an experiment of this kind in its model-training view (runs, charts,
# models), not its GenAI view (traces, evaluations): the UI's ExperimentKind enum
# (mlflow/server/js, `CUSTOM_MODEL_DEVELOPMENT = "custom_model_development"`)
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment `name`, created if missing, of the model-training kind (the caller
    is logged in)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, tags=EXPERIMENT_KIND)
    mark_model_training(client, experiment)
    return experiment.experiment_id


def mark_model_training(client: Any, experiment: Any) -> None:
    """Give `experiment` the model-training kind if it has none (stage 02, and a fine-tune into
    an experiment stage 02 did not make); a kind someone chose in the UI stays."""
    for key, value in EXPERIMENT_KIND.items():
        if key not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, key, value)


def ensure_reader(uri: str, admin: dict[str, str], reader: dict[str, str]) -> None:
    """The read-only user the model servers log in as: created, or its password set to the
    credential's. Through the basic-auth app's REST API as the admin (its routes:
    mlflow/server/auth/routes.py of MLflow 3.17.2; its client module would import the server)."""
    session = requests.Session()
    session.auth = (admin["username"], admin["password"])
    session.trust_env = False  # the server is on loopback or behind a port-forward
    api = f"{uri}/api/2.0/mlflow/users"
    found = session.get(f"{api}/get", params={"username": reader["username"]}, timeout=30)
    if found.status_code == 404:
        done = session.post(f"{api}/create", json=reader, timeout=30)
    elif found.ok:
        done = session.patch(f"{api}/update-password", json=reader, timeout=30)
    else:
        done = found
    if not done.ok:
        raise RuntimeError(
            f"MLflow refused to set up user {reader['username']!r} at {uri}: "
            f"{done.status_code} {done.text[:200]}"
        )


def verify_artifact_store(
    mlflow_client: Any, storage: Any, bucket: str, label: str
) -> dict[str, Any]:
    """Log a small artifact through the server (`mlflow_client`, logged in as the admin) and
    find it as a blob in `bucket` (`storage`, a google-cloud-storage client).

    The check run goes to its own experiment so that it never competes with fine-tunes.
    """
    experiment_id = ensure_experiment(mlflow_client.tracking_uri, CHECK_EXPERIMENT)
    mlflow_run = mlflow_client.create_run(experiment_id, run_name=f"artifact-check-{label}")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.txt"
        probe.write_text(f"tunekit run {label}\n")
        mlflow_client.log_artifact(mlflow_run.info.run_id, str(probe))
    mlflow_client.set_terminated(mlflow_run.info.run_id)
    prefix = f"{ARTIFACT_PREFIX}/{experiment_id}/{mlflow_run.info.run_id}/"
    blobs = [b.name for b in storage.list_blobs(bucket, prefix=prefix)]
    if not blobs:
        raise RuntimeError(
            f"MLflow accepted an artifact but no blob appeared under "
            f"gs://{bucket}/{prefix}: check the server's --artifacts-destination"
        )
    return {"checked": True, "mlflow_run_id": mlflow_run.info.run_id, "blobs": blobs}
