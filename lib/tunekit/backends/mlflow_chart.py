"""What the community-charts/mlflow chart makes of the kit's Helm values.

The local and the gke profile both start MLflow from these values (`server_values`): the
cluster through the chart, the local profile with `server_args`, the same arguments as the pod.
There is no Helm on the machines the kit is developed on, so what the chart's templates do with
our values is written down here, each rule with the template it comes from (chart VERSION, read
at the tag `mlflow-<VERSION>` of github.com/community-charts/helm-charts, folder charts/mlflow),
and tests check the values against the other rules: the auth database, the init containers'
images, the user the containers run as.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from tunekit.run import Run
from tunekit.tracking import ARTIFACT_PREFIX, DEFAULT_PERMISSION, extra_args

NAME = "community-charts/mlflow"
REPOSITORY = "https://community-charts.github.io/helm-charts"
# The newest release in the repository's index.yaml (gh-pages branch, generated
# 2026-08-22T03:00:10Z): 1.11.5, appVersion 3.15.1. 1.11.7, pinned before, was never released.
VERSION = "1.11.5"
APP_VERSION = "3.15.1"  # Chart.yaml appVersion: the MLflow of the chart's default images

# The chart's defaults the rules below depend on (values.yaml at mlflow-1.11.5).
DEFAULTS: dict[str, Any] = {
    "serverHost": "0.0.0.0",  # l.479
    "service": {"containerPort": 5000},  # l.104
    "log": {"enabled": True, "level": "info"},  # l.110-114
    "initImages": {  # l.19-43
        "dbchecker": {"repository": "busybox", "tag": "1.38.0"},
        "mlflowDbMigration": {"repository": "burakince/mlflow", "tag": ""},
        "iniFileInitializer": {"repository": "busybox", "tag": "1.38.0"},
    },
    "podSecurityContext": {"fsGroup": 1001, "fsGroupChangePolicy": "OnRootMismatch"},  # l.79
    "securityContext": {  # l.82-92, the main container's and every init container's
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "privileged": False,
        "runAsUser": 1001,
        "runAsGroup": 1001,
    },
    "auth": {"sqliteFile": "basic_auth.db", "sqliteFullPath": "", "postgres": {"enabled": False}},
    "extraArgs": {},
}


def server_values(run: Run) -> dict[str, Any]:
    """The values that decide `mlflow server`'s arguments, the same on the cluster and
    locally: artifacts proxied to the run's bucket, the basic-auth app, the extra arguments."""
    return {
        "artifactRoot": {
            "proxiedArtifactStorage": True,
            "gcs": {"enabled": True, "bucket": run.settings.bucket, "path": ARTIFACT_PREFIX},
        },
        "auth": {"enabled": True, "defaultPermission": DEFAULT_PERMISSION},
        "extraArgs": extra_args(run),
    }


def merged(values: dict[str, Any]) -> dict[str, Any]:
    """The chart's defaults with `values` over them, as Helm merges them: maps key by key, all
    the way down; anything else replaced."""

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(base)
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out

    return merge(DEFAULTS, values)


def server_args(values: dict[str, Any], backend_store_uri: str) -> list[str]:
    """`mlflow server`'s arguments (templates/deployment.yaml, the main container's `args`),
    with `backend_store_uri` where the chart writes `postgresql+<driver>://` (libpq takes the
    rest from PG* variables)."""
    v = merged(values)
    artifacts = v.get("artifactRoot", {})
    prefix = "artifacts-destination" if artifacts.get("proxiedArtifactStorage") else (
        "default-artifact-root")  # fmt: skip
    gcs = artifacts.get("gcs", {})
    if gcs.get("enabled"):
        destination = f"gs://{gcs['bucket']}/{gcs.get('path', '')}"
    elif prefix == "artifacts-destination":
        destination = artifacts.get("defaultArtifactsDestination", "./mlartifacts")
    else:
        destination = artifacts.get("defaultArtifactRoot", "./mlruns")
    args = [
        f"--host={v['serverHost']}",
        f"--port={v['service']['containerPort']}",
        f"--backend-store-uri={backend_store_uri}",
        f"--{prefix}={destination}",
    ]
    if artifacts.get("proxiedArtifactStorage"):
        args.append("--serve-artifacts")
    if v.get("auth", {}).get("enabled"):
        args.append(f"--app-name={v['auth'].get('appName', 'basic-auth')}")
    extra = v["extraArgs"]
    if v["log"]["enabled"] and not {"gunicornOpts", "uvicornOpts"} & set(extra):
        args.append(f"--uvicorn-opts='--log-level={v['log']['level']}'")
    # `range` over a map visits its keys in sorted order; `kebabcase` (sprig) splits camelCase
    args += [f"--{_kebab(key)}={extra[key]}" for key in sorted(extra)]
    return args


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def auth_database_uri(values: dict[str, Any]) -> str:
    """`database_uri` of the basic-auth ini (templates/auth_ini_configmap.yaml): PostgreSQL when
    `auth.postgres.enabled`, else `sqlite:///<sqliteFullPath><sqliteFile>`, which without
    `sqliteFullPath` is the relative `sqlite:///basic_auth.db` (the user and password stay
    placeholders here; an init container fills them in with sed)."""
    v = merged(values)
    auth = v["auth"]
    pg = auth["postgres"]
    if pg.get("enabled"):
        driver = f"+{pg['driver']}" if pg.get("driver") else ""
        return (
            f"postgresql{driver}://$(POSTGRES_USERNAME_PLACEHOLDER):"
            f"$(POSTGRES_PASSWORD_PLACEHOLDER)@{pg['host']}:{pg.get('port', 5432)}/"
            f"{pg['database']}"
        )
    if v.get("postgresql", {}).get("enabled"):
        raise NotImplementedError("the chart's bundled Bitnami PostgreSQL is not used by tunekit")
    # `printf "%s/" X | trimSuffix "/"` gives X back: the path needs its own trailing slash
    return f"sqlite:///{auth['sqliteFullPath']}{auth['sqliteFile']}"


def init_container_images(values: dict[str, Any]) -> dict[str, str]:
    """The images of the init containers the kit's values turn on (templates/deployment.yaml):
    the database check, the schema migration (its tag defaults to the chart's appVersion), the
    auth ini writer."""
    v = merged(values)
    images = v["initImages"]

    def ref(name: str, default_tag: str = "") -> str:
        return f"{images[name]['repository']}:{images[name].get('tag') or default_tag}"

    store = v.get("backendStore", {})
    found = {}
    if store.get("databaseConnectionCheck"):
        found["dbchecker"] = ref("dbchecker")
    if store.get("databaseMigration"):
        found["mlflow-db-migration"] = ref("mlflowDbMigration", APP_VERSION)
    if v.get("auth", {}).get("enabled"):
        found["ini-file-initializer"] = ref("iniFileInitializer")
    return found


def container_security_context(values: dict[str, Any]) -> dict[str, Any]:
    """The securityContext of the MLflow container and of each init container: the chart's
    default merged with the kit's (`toYaml .Values.securityContext`, l.95, 179, 279, 344).
    A container's runAsUser wins over the pod's."""
    return merged(values)["securityContext"]
