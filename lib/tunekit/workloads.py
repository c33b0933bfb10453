"""The workloads as Kubernetes objects rendered from the settings, and as local processes.

One source of truth: the gke profile applies these objects; the local profile runs the same
containers as processes (`as_process`), with the container's command, arguments and environment,
its mounts mapped to directories of the run and its port to a free local one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunekit import credentials, node_sizing
from tunekit.kube import GKE_ACCELERATOR_LABEL
from tunekit.models import TINY
from tunekit.run import Run
from tunekit.tracking import (
    ARTIFACT_PREFIX,
    AUTH_DATABASE,
    DEFAULT_PERMISSION,
    TRACKING_DATABASE,
    extra_args,
)

K8S_VERSION = "1.34"  # the Kubernetes minor version the manifests are validated against
PART_OF = {"app.kubernetes.io/part-of": "tunekit"}
TRAIN_SA, SERVE_SA, MLFLOW_SA = "tunekit-train", "tunekit-serve", "mlflow"
HF_SECRET = "hf-token"
MLFLOW_AUTH_SECRET, MLFLOW_READER_SECRET = credentials.ADMIN, credentials.READER
MLFLOW_DB_SECRET = credentials.DATABASE
CONFIG_DIR, WORKSPACE, MODEL_DIR = "/etc/tunekit", "/workspace", "/mnt/models"
MLFLOW_PORT, SERVE_PORT, POSTGRES_PORT = 5000, 8080, 5432
POSTGRES_IMAGE = "postgres:17.6-bookworm"
IMAGES = ("finetune", "serve", "mlserver", "mlflow")  # built by cloudbuild.yaml
# KServe (RawDeployment mode: no Knative, no Istio) and the cert-manager it needs, installed by
# stage 06 when the cluster has no KServe yet.
KSERVE_VERSION, CERT_MANAGER_VERSION = "v0.15.2", "v1.17.2"
HF_RUNTIME = "kserve-huggingfaceserver"  # KServe's ClusterServingRuntime for Hugging Face models
UID = 10001  # the images' non-root user
FINETUNE_LABEL = "tunekit.dev/finetune"  # a fine-tune's Jobs (its attempts) carry its folder name


def image(run: Run, name: str) -> str:
    """`<region>-docker.pkg.dev/<project>/tunekit/<name>:<tag>` on gke, else `tunekit/<name>`
    (the names kind loads)."""
    s = run.settings
    registry = f"{s.region}-docker.pkg.dev/{s.project_id}/tunekit" if s.project_id else "tunekit"
    return f"{registry}/{name}:{s.image_tag}"


def bucket_folder(run: Run) -> str:
    """The run's folder in the bucket: the Job's /workspace (checkpoints, result.json)."""
    return f"tunekit/{run.id}"


def in_cluster_tracking_uri(run: Run) -> str:
    return f"http://mlflow.{run.settings.namespace}.svc.cluster.local:{MLFLOW_PORT}"


def _meta(
    run: Run, name: str, component: str, labels: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    common = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component}
    return {
        "name": name,
        "namespace": run.settings.namespace,
        "labels": {**common, **PART_OF, **(labels or {})},
        **extra,
    }


def _env(values: dict[str, str], secrets: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """Plain values, then variables from Secrets (optional: absent keys are left unset)."""
    plain = [{"name": k, "value": v} for k, v in values.items()]
    refs = [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": s, "key": key, "optional": True}}}
        for k, (s, key) in secrets.items()
    ]
    return plain + refs


def _mlflow_login(secret: str) -> dict[str, tuple[str, str]]:
    """MLflow's client login (MLFLOW_TRACKING_USERNAME/PASSWORD) from Secret `secret`."""
    names = credentials.LOGIN_VARIABLES
    return {names[0]: (secret, "username"), names[1]: (secret, "password")}


_ADMIN_LOGIN = _mlflow_login(MLFLOW_AUTH_SECRET)  # the fine-tune writes its run
_READER_LOGIN = _mlflow_login(MLFLOW_READER_SECRET)  # servers only read the registry
_HF_TOKEN = {"HF_TOKEN": (HF_SECRET, "HF_TOKEN")}

_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _gpu_placement(run: Run) -> dict[str, Any]:
    """nodeSelector and tolerations that put a pod on the GPU pool."""
    s = run.settings
    selector = {GKE_ACCELERATOR_LABEL: s.gpu_type}
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if s.gpu_spot:
        selector["cloud.google.com/gke-spot"] = "true"
        tolerations.append(
            {
                "key": "cloud.google.com/gke-spot",
                "operator": "Equal",
                "value": "true",
                "effect": "NoSchedule",
            }
        )
    return {"nodeSelector": selector, "tolerations": tolerations}


def _gpu_resources(run: Run, mounts_bucket: bool = False) -> dict[str, Any]:
    """All of a GPU node's GPUs, and what else the node has room for beside GKE's own pods and,
    for a pod that mounts the bucket, the FUSE sidecar (tunekit.node_sizing)."""
    share = node_sizing.quantities(node_sizing.pod_share(run.settings.gpu_machine_type,
                                                         mounts_bucket))  # fmt: skip
    amounts = {**share, "nvidia.com/gpu": str(run.settings.gpu_count)}
    return {"requests": amounts, "limits": dict(amounts)}


def _scratch(*mounts: tuple[str, str, str]) -> tuple[list[dict], list[dict]]:
    """emptyDir volumes (name, mountPath, medium) for a read-only root filesystem."""
    volumes = [{"name": n, "emptyDir": {"medium": m} if m else {}} for n, _, m in mounts]
    return volumes, [{"name": n, "mountPath": p} for n, p, _ in mounts]


# --- stage 01: namespace and service accounts


def namespace(run: Run) -> list[dict[str, Any]]:
    """The namespace and the Kubernetes service accounts Workload Identity grants roles to."""
    ns = run.settings.namespace
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ns,
                "labels": {**PART_OF, "pod-security.kubernetes.io/enforce": "baseline"},
            },
        },
        *[
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": _meta(run, sa, "identity"),
                "automountServiceAccountToken": False,
            }
            for sa in (TRAIN_SA, SERVE_SA)
        ],
        {
            # Ingress only from the namespace itself (port-forwards go through the kubelet).
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(run, "same-namespace", "network"),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {}}]}],
            },
        },
    ]


def secret(run: Run, name: str, data: dict[str, str]) -> dict[str, Any]:
    """A Secret; callers pass the values only when applying, never when writing a file."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(run, name, "credentials"),
        "stringData": data,
    }


# --- stage 02: MLflow (Helm values) and its PostgreSQL


def mlflow_values(run: Run) -> dict[str, Any]:
    """Values for community-charts/mlflow (`tunekit.mlflow_chart` says what the chart makes of
    them): the kit's MLflow image, also for the schema migration; runs and registry in
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
        "artifactRoot": {
            "proxiedArtifactStorage": True,
            "gcs": {"enabled": True, "bucket": s.bucket, "path": ARTIFACT_PREFIX},
        },
        "auth": {
            "enabled": True,
            "defaultPermission": DEFAULT_PERMISSION,
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
        "extraArgs": extra_args(run),
        "extraEnvVars": {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        "podSecurityContext": _pod_security(),
        # the chart's container default sets runAsUser/runAsGroup 1001, which Helm keeps unless
        # they are set here, and which wins over the pod's
        "securityContext": {**_CONTAINER_SECURITY, "runAsUser": UID, "runAsGroup": UID},
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
        "securityContext": {**_CONTAINER_SECURITY, "readOnlyRootFilesystem": True},
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
            "metadata": _meta(
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
            "metadata": _meta(run, "postgres", "database"),
            "spec": {
                "selector": labels,
                "ports": [{"name": "postgres", "port": POSTGRES_PORT, "targetPort": "postgres"}],
            },
        },
    ]


# --- stage 03: the fine-tune Job


def _workspace_volume(run: Run, read_only: bool = False) -> dict[str, Any]:
    """The run's folder in the bucket as volume `workspace` (Cloud Storage FUSE)."""
    options = f"implicit-dirs,only-dir={bucket_folder(run)}"
    return {
        "name": "workspace",
        "csi": {
            "driver": "gcsfuse.csi.storage.gke.io",
            "readOnly": read_only,
            "volumeAttributes": {"bucketName": run.settings.bucket, "mountOptions": options},
        },
    }


def finetune_job(
    run: Run, job: str, tracking_uri: str, config_yaml: str, attempt: int = 1
) -> list[dict[str, Any]]:
    """The ConfigMap with the job's settings and Job `<job>-<attempt>` running
    `python -m tunekit.train` into `/workspace/finetune/<job>`.

    `/workspace` is the run's folder in the bucket (Cloud Storage FUSE), so checkpoints survive
    a preempted Spot node and the retried pod resumes from the last one (`--resume`); so does a
    new attempt after a failed one. A preemption is retried without counting as a failure; a
    training process that exits with an error (Python's exit status 1, or 2 for bad arguments)
    fails the Job at once, as a retry would fail the same way; a pod lost otherwise (killed,
    its node gone) is retried; running past `job_deadline_h` fails the Job.
    """
    s = run.settings
    local_model = s.model_id == TINY or Path(s.model_id).is_dir()
    local_data = s.dataset == "synthetic" or Path(s.dataset).is_file()
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_FLATTEN_PARAMS": "true",
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # nothing to download: skip the Hub's lookups
        **({"HF_HUB_OFFLINE": "1"} if local_model and local_data else {}),
    }
    scratch_volumes, scratch_mounts = _scratch(
        ("dshm", "/dev/shm", "Memory"), ("cache", "/home/tunekit/.cache", ""), ("tmp", "/tmp", "")
    )
    container = {
        "name": "train",
        "image": image(run, "finetune"),
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "tunekit.train"],
        "args": [
            "--config",
            f"{CONFIG_DIR}/config.yaml",
            "--output-dir",
            f"{WORKSPACE}/finetune/{job}",
            "--models-dir",
            f"{WORKSPACE}/models",
            "--resume",
        ],
        "env": _env(env, {**_HF_TOKEN, **_ADMIN_LOGIN}),
        "resources": _gpu_resources(run, mounts_bucket=True),
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "workspace", "mountPath": WORKSPACE},
            *scratch_mounts,
        ],
    }
    name = f"{job}-{attempt}"
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(run, f"{job}-config", "finetune"),
            "data": {"config.yaml": config_yaml},
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": _meta(run, name, "finetune", labels={FINETUNE_LABEL: job}),
            "spec": {
                "backoffLimit": 3,  # pods lost for other reasons (a node failure) are retried
                "activeDeadlineSeconds": int(s.job_deadline_h * 3600),
                "podFailurePolicy": {
                    "rules": [
                        {
                            "action": "Ignore",
                            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                        },
                        {
                            "action": "FailJob",
                            "onExitCodes": {
                                "containerName": "train",
                                "operator": "In",
                                "values": [1, 2],  # Python's exit on an error; bad arguments
                            },
                        },
                    ]
                },
                "ttlSecondsAfterFinished": 7 * 24 * 3600,
                "template": {
                    "metadata": {
                        "labels": {"app.kubernetes.io/name": name, FINETUNE_LABEL: job, **PART_OF},
                        "annotations": {"gke-gcsfuse/volumes": "true"},
                    },
                    "spec": {
                        "serviceAccountName": TRAIN_SA,
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "securityContext": _pod_security(),
                        **_gpu_placement(run),
                        "containers": [container],
                        "volumes": [
                            {"name": "config", "configMap": {"name": f"{job}-config"}},
                            _workspace_volume(run),
                            *scratch_volumes,
                        ],
                    },
                },
            },
        },
    ]


# --- stage 05: FastAPI Deployment + Service


def _server_env(run: Run, tracking_uri: str, version: str) -> dict[str, str]:
    """What a server needs to load the champion (a new version restarts the server)."""
    return {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "TUNEKIT_SERVED_VERSION": version,
        "HF_HUB_OFFLINE": "1" if run.settings.model_id == TINY else "0",
    }


def serve_deployment(run: Run, model_uri: str, version: str, tracking_uri: str) -> list[dict]:
    """`python -m tunekit.serve` on the champion: a Deployment (probes on /healthz and /readyz)
    and a ClusterIP Service on port 80.

    A new version replaces the pod rather than starting a second one beside it (`Recreate`: a
    rolling update would need another GPU node). A base model the fine-tune built itself
    (tiny-gemma2) lives in the run's bucket folder, at the path the logged model records, so
    the pod mounts that folder read-only at the same place.
    """
    labels = {"app.kubernetes.io/name": "tunekit-serve"}
    health = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10}
    scratch_volumes, scratch_mounts = _scratch(
        ("cache", "/home/tunekit/.cache", ""), ("tmp", "/tmp", "")
    )
    built_base = run.settings.model_id == TINY
    if built_base:
        scratch_volumes.append(_workspace_volume(run, read_only=True))
        scratch_mounts.append({"name": "workspace", "mountPath": WORKSPACE, "readOnly": True})
    container = {
        "name": "serve",
        "image": image(run, "serve"),
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "tunekit.serve"],
        "args": ["--model-uri", model_uri, "--host", "0.0.0.0", "--port", str(SERVE_PORT)],
        "ports": [{"name": "http", "containerPort": SERVE_PORT}],
        "env": _env(_server_env(run, tracking_uri, version), {**_HF_TOKEN, **_READER_LOGIN}),
        "resources": _gpu_resources(run, mounts_bucket=built_base),
        "startupProbe": {**health, "failureThreshold": 90},  # loading the model: up to 15 min
        "livenessProbe": health,
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": scratch_mounts,
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(run, "tunekit-serve", "serving"),
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {
                        "labels": {**labels, **PART_OF},
                        **({"annotations": {"gke-gcsfuse/volumes": "true"}} if built_base else {}),
                    },
                    "spec": {
                        "serviceAccountName": SERVE_SA,
                        "automountServiceAccountToken": False,
                        "securityContext": _pod_security(),
                        **_gpu_placement(run),
                        "containers": [container],
                        "volumes": scratch_volumes,
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(run, "tunekit-serve", "serving"),
            "spec": {
                "type": "ClusterIP",
                "selector": labels,
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
    ]


# --- stage 06: KServe


def mlserver_runtime(run: Run, tracking_uri: str, version: str) -> dict[str, Any]:
    """A ServingRuntime: the kit's MLServer image (mlserver-mlflow and the model's dependencies
    baked in) loading the model KServe's storage initializer put in /mnt/models."""
    env = {
        "MLSERVER_MODEL_IMPLEMENTATION": "mlserver_mlflow.MLflowRuntime",
        "MLSERVER_MODEL_NAME": "{{.Name}}",
        "MLSERVER_MODEL_URI": MODEL_DIR,
        "MLSERVER_HTTP_PORT": str(SERVE_PORT),
        "MLSERVER_GRPC_PORT": "9000",
        "MLSERVER_METRICS_PORT": "8082",
        "MLSERVER_PARALLEL_WORKERS": "0",  # the model in the server process: one copy in memory
        **_server_env(run, tracking_uri, version),
    }
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": _meta(run, "tunekit-mlserver", "serving"),
        "spec": {
            "supportedModelFormats": [{"name": "mlflow", "version": "2", "autoSelect": False}],
            "protocolVersions": ["v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": image(run, "mlserver"),
                    "command": ["mlserver", "start", MODEL_DIR],
                    "env": _env(env, {**_HF_TOKEN, **_READER_LOGIN}),
                    "ports": [{"name": "http", "containerPort": SERVE_PORT, "protocol": "TCP"}],
                    "securityContext": {**_CONTAINER_SECURITY, "readOnlyRootFilesystem": False},
                    "resources": {
                        "requests": {"cpu": "1", "memory": "2Gi"},
                        "limits": {"cpu": "1", "memory": "2Gi"},
                    },
                }
            ],
        },
    }


def _inference_service(run: Run, name: str, model: dict[str, Any]) -> dict[str, Any]:
    """An InferenceService (RawDeployment, on the GPU pool) whose predictor serves `model`
    from `storageUri`, with the serving account and the GPU resources of the other servers."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _meta(
            run, name, "serving", annotations={"serving.kserve.io/deploymentMode": "RawDeployment"}
        ),
        "spec": {
            "predictor": {
                "serviceAccountName": SERVE_SA,
                # one GPU node each: replace the pod, do not surge a second one beside it
                "deploymentStrategy": {"type": "Recreate"},
                **_gpu_placement(run),
                "model": {**model, "protocolVersion": "v2", "resources": _gpu_resources(run)},
            }
        },
    }


def mlserver_inference_service(run: Run, storage_uri: str) -> dict[str, Any]:
    """The champion on the kit's MLServer runtime (Open Inference Protocol V2)."""
    model = {
        "modelFormat": {"name": "mlflow"},
        "runtime": "tunekit-mlserver",
        "storageUri": storage_uri,
    }
    return _inference_service(run, run.settings.registered_model_name, model)


def vllm_inference_service(run: Run, storage_uri: str) -> dict[str, Any]:
    """Beyond the tutorial: KServe's Hugging Face runtime (vLLM) serving the base model with the
    champion's LoRA adapter, OpenAI-compatible (`/openai/v1/completions`, model `<name>-lora`)."""
    s = run.settings
    name = f"{s.registered_model_name}-vllm"
    model = {
        "modelFormat": {"name": "huggingface"},
        # KServe's own runtime, named rather than auto-selected: with nvidia.com/gpu in the
        # limits the controller runs its CUDA build, the image tag with suffix -gpu (the plain
        # tag is the CPU build)
        "runtime": HF_RUNTIME,
        "storageUri": storage_uri,  # the adapter; the base comes from the Hub
        "args": [
            f"--model_name={name}",
            f"--model_id={s.model_id}",
            "--backend=vllm",
            "--dtype=bfloat16",
            "--max-model-len=2048",
            "--enable-lora",
            f"--max-lora-rank={s.lora_r}",
            f"--lora-modules={s.registered_model_name}-lora={MODEL_DIR}/peft",
        ],
        "env": _env({}, _HF_TOKEN),
    }
    return _inference_service(run, name, model)


# --- the local profile: a container as a process


@dataclass(frozen=True)
class Process:
    """A container as a local process: argv, environment (on top of os.environ), health path."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/"


def as_process(
    container: dict[str, Any],
    mounts: dict[str, str],
    overrides: dict[str, str] | None = None,
    executables: dict[str, str] | None = None,
    secrets: Callable[[str, str], str | None] | None = None,
) -> Process:
    """Run `container` here: its command and args with each mount path replaced by a local
    directory, its first port replaced by `{port}` (filled in by the service runner), listening
    on 127.0.0.1; its env values plus `overrides`. A variable from a Secret takes the value
    `secrets(name, key)` gives (the run's credentials); without one it is left to the
    environment (e.g. HF_TOKEN)."""
    executables = {"python": sys.executable, **(executables or {})}
    port = str(container["ports"][0]["containerPort"]) if container.get("ports") else None

    def local(value: str) -> str:
        if value == port:
            return "{port}"
        if value == "0.0.0.0":
            return "127.0.0.1"
        for path, target in mounts.items():
            if value == path or value.startswith(path + "/"):
                return target + value[len(path) :]
        return value

    command = [executables.get(c, c) for c in container.get("command", [])[:1]]
    argv = command + [local(a) for a in [*container["command"][1:], *container.get("args", [])]]
    env = {e["name"]: local(e["value"]) for e in container.get("env", []) if "value" in e}
    for e in container.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref and secrets and (value := secrets(ref["name"], ref["key"])) is not None:
            env[e["name"]] = value
    probe = container.get("readinessProbe", {}).get("httpGet", {})
    return Process(argv, {**env, **(overrides or {})}, probe.get("path", "/"))


def container_of(objects: list[dict[str, Any]] | dict[str, Any], kind: str) -> dict[str, Any]:
    """The (first) container of the object of `kind` among `objects`."""
    for obj in objects if isinstance(objects, list) else [objects]:
        if obj["kind"] == kind:
            spec = obj["spec"]
            if kind == "ServingRuntime":
                return spec["containers"][0]
            return (spec.get("template", {}).get("spec") or spec)["containers"][0]
    raise KeyError(f"no {kind} among the rendered objects")


def vllm_serves(run: Run) -> bool:
    """The vLLM InferenceService needs a Hub base model (not tiny-gemma2 or a local folder) and
    an adapter of LoRA weights only (vLLM 0.8.5, in KServe 0.15's image, refuses
    `modules_to_save`: vllm/lora/peft_helper.py)."""
    s = run.settings
    return s.model_id != TINY and not Path(s.model_id).is_dir() and not s.lora_modules_to_save
