"""Stage 02: the MLflow chart's values and the PostgreSQL it keeps its data in."""

from __future__ import annotations

from typing import Any

from tunekit.backends import mlflow_chart
from tunekit.backends.gke.workloads.pods import (
    CONTAINER_SECURITY,
    MLFLOW_AUTH_SECRET,
    MLFLOW_DB_SECRET,
    MLFLOW_PORT,
    MLFLOW_SA,
    PART_OF,
    POSTGRES_PORT,
    UID,
    image,
    meta,
    pod_security,
)
from tunekit.run import Run
from tunekit.tracking import AUTH_DATABASE, TRACKING_DATABASE

POSTGRES_IMAGE = "postgres:17.6-bookworm"


# --- stage 02: MLflow (Helm values) and its PostgreSQL


def mlflow_values(run: Run) -> dict[str, Any]:
    """Values for community-charts/mlflow (`mlflow_chart` says what the chart makes of them):
    the kit's MLflow image, also for the schema migration; runs and registry in
    PostgreSQL, the basic-auth users in a database of their own there; artifacts proxied to
    the bucket; the images' user; allowed Host headers, probes and resources."""
    s = run.settings
    repository, tag = image(run, "mlflow").rsplit(":", 1)
    probe = {
        "initialDelaySeconds": 10,
        "periodSeconds": 15,
        "timeoutSeconds": 5,
        "failureThreshold": 6,
    }
    database = {
        "host": f"postgres.{s.namespace}.svc.cluster.local",
        "port": POSTGRES_PORT,
        "driver": "psycopg2",
    }
    login = {"name": MLFLOW_DB_SECRET, "usernameKey": "username", "passwordKey": "password"}
    server = mlflow_chart.server_values(run)
    return {
        "fullnameOverride": "mlflow",
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        # the migration init container runs `mlflow` too: the server's own version, whose
        # schema head the server insists on (mlflow/store/db/utils.py `_verify_schema`)
        "initImages": {
            "mlflowDbMigration": {
                "repository": repository,
                "tag": tag,
                "pullPolicy": "IfNotPresent",
            }
        },
        "serviceAccount": {"create": True, "name": MLFLOW_SA},
        "service": {"type": "ClusterIP", "port": MLFLOW_PORT},
        "backendStore": {
            "databaseMigration": True,
            "databaseConnectionCheck": True,
            "postgres": {"enabled": True, "database": TRACKING_DATABASE, **database},
            "existingDatabaseSecret": login,
        },
        "artifactRoot": server["artifactRoot"],
        "auth": {
            **server["auth"],
            "existingAdminSecret": {
                "name": MLFLOW_AUTH_SECRET,
                "usernameKey": "username",
                "passwordKey": "password",
            },
            # users survive restarts: their own database in the same PostgreSQL (the chart's
            # default is a relative SQLite file under the read-only root filesystem)
            "postgres": {
                "enabled": True,
                "database": AUTH_DATABASE,
                **database,
                "existingSecret": login,
            },
        },
        "extraArgs": server["extraArgs"],
        "extraEnvVars": {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        "podSecurityContext": pod_security(),
        # the chart's container default sets runAsUser/runAsGroup 1001, which Helm keeps unless
        # they are set here, and which wins over the pod's
        "securityContext": {**CONTAINER_SECURITY, "runAsUser": UID, "runAsGroup": UID},
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
        "livenessProbe": probe,
        "readinessProbe": probe,
    }


# psql input that creates the basic-auth users' database unless it exists (PostgreSQL has no
# CREATE DATABASE IF NOT EXISTS): stage 02 runs it in the PostgreSQL pod, on a new volume as on
# one an earlier run initialised.
CREATE_AUTH_DATABASE = (
    f"SELECT 'CREATE DATABASE \"{AUTH_DATABASE}\"' "
    f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{AUTH_DATABASE}')\\gexec\n"
)


def postgres(run: Run) -> list[dict[str, Any]]:
    """A single PostgreSQL for MLflow (the official image, a 10 GiB disk): runs and registry in
    POSTGRES_DB; stage 02 adds the basic-auth users' database (CREATE_AUTH_DATABASE)."""
    labels = {"app.kubernetes.io/name": "postgres"}
    container = {
        "name": "postgres",
        "image": POSTGRES_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "postgres", "containerPort": POSTGRES_PORT}],
        "env": [
            {"name": "POSTGRES_DB", "value": TRACKING_DATABASE},
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
            *[
                {"name": k, "valueFrom": {"secretKeyRef": {"name": MLFLOW_DB_SECRET, "key": key}}}
                for k, key in (("POSTGRES_USER", "username"), ("POSTGRES_PASSWORD", "password"))
            ],
        ],
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "readinessProbe": {
            "exec": {"command": ["pg_isready", "-U", "postgres"]},
            "periodSeconds": 10,
        },
        "livenessProbe": {
            "exec": {"command": ["pg_isready", "-U", "postgres"]},
            "periodSeconds": 30,
            "initialDelaySeconds": 30,
        },
        "securityContext": {**CONTAINER_SECURITY, "readOnlyRootFilesystem": True},
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta(
                run,
                "postgres",
                "database",
                annotations={"checkov.io/skip1": "CKV_K8S_40=the official image's user is 999"},
            ),
            "spec": {
                "serviceName": "postgres",
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": {**labels, **PART_OF}},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 999,
                            "runAsGroup": 999,
                            "fsGroup": 999,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [container],
                        "volumes": [
                            {"name": "run", "emptyDir": {}},
                            {"name": "tmp", "emptyDir": {}},
                        ],
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "10Gi"}},
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(run, "postgres", "database"),
            "spec": {
                "selector": labels,
                "ports": [{"name": "postgres", "port": POSTGRES_PORT, "targetPort": "postgres"}],
            },
        },
    ]
