"""The local profile's services, each a process on 127.0.0.1: the GCS emulator, the MLflow
server (as the chart runs it), and the model servers (the containers of the gke profile's
Deployment and ServingRuntime)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

from tunekit import credentials
from tunekit.backends import containers
from tunekit.backends.local import mlserver_env
from tunekit.credentials import LocalSecrets
from tunekit.local_services import ServiceSpec, free_port
from tunekit.registry import champion_uri
from tunekit.run import Run
from tunekit.server_requests import challenger_version, champion_version
from tunekit.tracking import auth_ini, tracking_uri


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


def mlflow_server_spec(
    run: Run, gcs_endpoint: str, database: dict[str, str] | None = None
) -> ServiceSpec:
    """`mlflow server` on 127.0.0.1 with the chart's arguments: SQLite in the run dir, or the
    PostgreSQL whose libpq environment is `database`; artifacts proxied to the bucket."""
    folder = run.dir / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    if database:
        from tunekit.backends.local.postgres import AUTH_URI, BACKEND_URI

        backend_uri, auth_uri = BACKEND_URI, AUTH_URI
    else:
        backend_uri = f"sqlite:///{folder / 'mlflow.db'}"
        auth_uri = f"sqlite:///{folder / 'basic_auth.db'}"
    ini = folder / "basic_auth.ini"
    ini.write_text(auth_ini(auth_uri))
    store = credentials.LocalSecrets(run.dir)
    admin = store.ensure(credentials.ADMIN)
    env = {
        "STORAGE_EMULATOR_HOST": gcs_endpoint,
        # The GenAI job runner (a dozen huey workers, ~2 GB) is not used by tunekit.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_USERNAME": admin["username"],
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin["password"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": store.ensure(credentials.SERVER_KEY)["key"],
        **(database or {}),
    }
    command = [sys.executable, "-m", "mlflow", "server",
               *server_arguments(run, "127.0.0.1", "{port}", backend_uri)]  # fmt: skip
    # A new SQLite store is created by the server itself (mlflow/cli `server` initialises the
    # backend stores before it forks its workers): `mlflow db upgrade` only for one that exists
    new_store = not database and not (folder / "mlflow.db").exists()
    return ServiceSpec(
        name="mlflow",
        command=command,
        health_path="/health",
        env=env,
        prepare=None if new_store else lambda: upgrade_database(backend_uri, env),
    )


def upgrade_database(backend_uri: str, env: dict[str, str]) -> None:
    """`mlflow db upgrade` by the server's own MLflow: a schema behind its version is migrated,
    one that is new is created (the server refuses any other: store/db/utils.py
    `_verify_schema`). On GKE the chart's migration init container runs the same image."""
    done = subprocess.run(
        [sys.executable, "-m", "mlflow", "db", "upgrade", backend_uri],
        env=credentials.child_environment(env),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).splitlines()[-15:])
        raise RuntimeError(f"`mlflow db upgrade` failed (exit code {done.returncode}):\n{tail}")


def fastapi_spec(run: Run) -> ServiceSpec:
    """`python -m tunekit.serve` on the champion: the gke profile's Deployment, as a process."""
    container = containers.serve(
        run, champion_uri(run.settings), champion_version(run), tracking_uri(run),
        challenger_version(run),
    )  # fmt: skip
    process = container.process({containers.WORKSPACE: str(run.dir)}, LocalSecrets(run.dir).value)
    return ServiceSpec("fastapi", process.argv, process.health_path, process.env)


def mlserver_spec(run: Run) -> ServiceSpec:
    """`mlserver start` on the champion: the gke profile's ServingRuntime container, as a process.

    KServe's storage initializer copies the model into /mnt/models; here MLServer's MLflow
    runtime reads the registered version itself (`models:/NAME/VERSION`) and /mnt/models is an
    empty folder of the run. The kit's runtime is importable from the run's mlserver/python, as
    from the image's /opt/tunekit; a changed runtime restarts the server.
    """
    name, version = run.settings.registered_model_name, champion_version(run)
    folder = run.dir / "mlserver"
    runtime_digest = install_runtime(folder / "python")
    # gRPC and metrics ports are chosen once per run and kept, so a re-run can reuse the server
    ports_file = folder / "ports.json"
    ports = json.loads(ports_file.read_text()) if ports_file.is_file() else {}
    ports = {k: ports.get(k) or free_port() for k in ("grpc", "metrics")}
    ports_file.write_text(json.dumps(ports))
    process = containers.mlserver(run, tracking_uri(run), version).process(
        {containers.MODELS: str(folder / "models")},
        LocalSecrets(run.dir).value,
        executables={"mlserver": mlserver_env.executable()},
        overrides={
            "MLSERVER_MODEL_NAME": name,
            "MLSERVER_MODEL_URI": f"models:/{name}/{version}",
            "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_GRPC_PORT": str(ports["grpc"]),
            "MLSERVER_METRICS_PORT": str(ports["metrics"]),
            "PYTHONPATH": str(folder / "python"),
            "TUNEKIT_RUNTIME_DIGEST": runtime_digest,
        },
    )
    (folder / "models").mkdir(exist_ok=True)
    return ServiceSpec("mlserver", process.argv, f"/v2/models/{name}/ready", process.env)


def install_runtime(path: Path) -> str:
    """The kit's MLServer runtime as `path`/tunekit/ (`containers.MLSERVER_RUNTIME_MODULES`),
    alone: MLServer's environment lacks the kit's packages, so `tunekit` there is a namespace
    package holding these modules. Returns their digest (a changed runtime restarts the
    server)."""
    digest = hashlib.sha256()
    for module in containers.MLSERVER_RUNTIME_MODULES:
        source = resources.files("tunekit").joinpath(module).read_bytes()
        target = path / "tunekit" / module
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_bytes() != source:
            target.write_bytes(source)
        digest.update(source)
    return digest.hexdigest()[:16]


def server_arguments(run: Run, host: str, port: str, backend_store_uri: str) -> list[str]:
    """`mlflow server`'s arguments as community-charts/mlflow renders them from the values the
    cluster's server gets (`mlflow_chart.server_values`), listening on `host`:`port`."""
    from tunekit.backends import mlflow_chart

    values = {**mlflow_chart.server_values(run), "serverHost": host,
              "service": {"containerPort": port}}  # fmt: skip
    return mlflow_chart.server_args(values, backend_store_uri)
