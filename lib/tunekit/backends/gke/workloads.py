"""The workloads as Kubernetes objects rendered from the settings.

Each pod's main container is a typed `tunekit.backends.containers.Container`, the same one the
local profile runs as a process; this module wraps it into the Job, Deployment, ServingRuntime
and InferenceServices the gke profile applies (volumes, probes, resources, placement).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunekit import credentials, distributed, gpu_stack
from tunekit.backends import containers
from tunekit.backends.containers import HF_TOKEN, MOUNT_PATHS, Container, SecretRef
from tunekit.backends.gke import node_sizing
from tunekit.backends.gke.kube import GKE_ACCELERATOR_LABEL, TRAINER_API
from tunekit.models import is_local_model, places_base
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
HF_SECRET = containers.HF_SECRET
MLFLOW_AUTH_SECRET, MLFLOW_READER_SECRET = credentials.ADMIN, credentials.READER
MLFLOW_DB_SECRET = credentials.DATABASE
MODEL_DIR = MOUNT_PATHS[containers.MODELS]
MLFLOW_PORT, SERVE_PORT, POSTGRES_PORT = 5000, containers.SERVE_PORT, 5432
POSTGRES_IMAGE = "postgres:17.6-bookworm"
# KServe (Standard mode, once RawDeployment: no Knative, no Istio) and the cert-manager it
# needs (v0.21.0's kserve-deps.env: v1.17.0 or newer), installed by stage 06 when the cluster
# has no KServe yet; tests/schemas.py validates against the same release's SDK.
KSERVE_VERSION, CERT_MANAGER_VERSION = "v0.21.0", "v1.17.2"
KSERVE_NAMESPACE, KSERVE_MODE = "kserve", "Standard"  # pkg/constants/constants.go
# its Deployments (install/v0.21.0/kserve.yaml: config/manager, config/llmisvc)
KSERVE_CONTROLLERS = ("kserve-controller-manager", "llmisvc-controller-manager")
HF_RUNTIME = "kserve-huggingfaceserver"  # KServe's ClusterServingRuntime for Hugging Face models
UID = 10001  # the images' non-root user
SWEEP_LABEL = "tunekit.dev/sweep"  # a sweep's trial Jobs carry its id
# Katib's webhook adds its metrics collector to a sweep's trial pods only in namespaces with
# this label (katib v0.19.0 manifests/v1beta1/components/webhook/webhooks.yaml); the sweep's
# cluster side is tunekit.backends.gke.katib
KATIB_INJECTION = "katib.kubeflow.org/metrics-collector-injection"
FINETUNE_LABEL = "tunekit.dev/finetune"  # a fine-tune's Jobs (its attempts) carry its folder name
ATTEMPT_LABEL = "tunekit.dev/attempt"  # and their attempt's number
# Kubeflow Trainer, installed by stage 03 where the cluster lacks it; its `torch-distributed`
# runtime, whose one replicated job and container are both `node` (v2.3.0
# manifests/base/runtimes/torch_distributed.yaml); a patch's manager is a domain-prefixed
# path (pkg/runtime/framework/plugins/jobset/jobset.go `IsDomainPrefixedPath`)
TRAINER_VERSION = "v2.3.0"
TRAINER_GROUP = TRAINER_API.split("/")[0]
TRAINER_RUNTIME, TRAINER_JOB, TRAINER_CONTAINER = "torch-distributed", "node", "node"
TRAINER_PATCH_MANAGER = "tunekit.dev/tunekit"
TRAINER_NAMESPACE = "kubeflow-system"
# PodSpecPatch's fields (trainjob_types.go): what a runtime patch may set on the pods
TRAINJOB_POD_FIELDS = ("serviceAccountName", "securityContext", "nodeSelector", "tolerations",
                       "volumes", "affinity", "imagePullSecrets")  # fmt: skip
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def registry(run: Run) -> str:
    """The kit's Artifact Registry repository (terraform creates it); `tunekit` without a
    project (the names kind loads)."""
    s = run.settings
    return f"{s.region}-docker.pkg.dev/{s.project_id}/tunekit" if s.project_id else "tunekit"


def image(run: Run, name: str) -> str:
    """`<registry>/<name>:<image_tag>`."""
    return f"{registry(run)}/{name}:{run.settings.image_tag}"


def bucket_folder(run: Run) -> str:
    """The run's folder in the bucket: the Job's /workspace (checkpoints, result.json)."""
    return f"tunekit/{run.id}"


def finetune_result_uri(run: Run, job: str) -> str:
    """Where fine-tune `job` writes its result.json in the bucket."""
    return f"gs://{run.settings.bucket}/{bucket_folder(run)}/finetune/{job}/result.json"


def in_cluster_tracking_uri(run: Run) -> str:
    return f"http://mlflow.{run.settings.namespace}.svc.cluster.local:{MLFLOW_PORT}"


def in_cluster_url(run: Run, service: str) -> str:
    return f"http://{service}.{run.settings.namespace}.svc.cluster.local"


def meta(
    run: Run, name: str, component: str, labels: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    common = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component}
    return {
        "name": name,
        "namespace": run.settings.namespace,
        "labels": {**common, **PART_OF, **(labels or {})},
        **extra,
    }


def _env(container: Container) -> list[dict[str, Any]]:
    """Plain values, then variables from Secrets (optional: absent keys are left unset)."""
    plain = [{"name": k, "value": container.in_pod(v)} for k, v in container.env.items()]
    return plain + _secret_env(container.secret_env)


def _secret_env(refs: Mapping[str, SecretRef]) -> list[dict[str, Any]]:
    return [
        {
            "name": k,
            "valueFrom": {"secretKeyRef": {"name": r.secret, "key": r.key, "optional": True}},
        }
        for k, r in refs.items()
    ]


def _container(
    run: Run, c: Container, *, mounts: bool = True, cuda: bool = False, **fields: Any
) -> dict[str, Any]:
    """`c` as a pod's container: the kit's image, its command, args, env, port and the volumes
    it mounts (`mounts=False` where the platform mounts them, as KServe does /mnt/models), then
    `fields` (resources, probes, more mounts). `cuda`: it runs on a GPU node, and checks at
    start that the node's driver runs the image's CUDA (tunekit.gpu_stack)."""
    rendered: dict[str, Any] = {
        "name": c.name,
        "image": image(run, c.image),
        "imagePullPolicy": "IfNotPresent",
        "command": [c.in_pod(v) for v in c.command],
    }
    if c.args:
        rendered["args"] = [c.in_pod(v) for v in c.args]
    if c.port:
        rendered["ports"] = [{"name": "http", "containerPort": c.port}]
    rendered["env"] = _env(c)
    if cuda:
        rendered["env"].append({"name": gpu_stack.REQUIRE_ENV, "value": gpu_stack.TORCH_CUDA})
    extra_mounts = fields.pop("volumeMounts", [])
    volume_mounts = [
        {"name": v, "mountPath": MOUNT_PATHS[v], **({"readOnly": True} if ro else {})}
        for v, ro in c.mounts.items()
    ] if mounts else []  # fmt: skip
    rendered.update(fields)
    if volume_mounts or extra_mounts:
        rendered["volumeMounts"] = volume_mounts + extra_mounts
    return rendered


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


def _gpu_resources(run: Run, mounts_bucket: bool = False, collector: bool = False) -> dict:
    """All of a GPU node's GPUs, and what else the node has room for beside GKE's own pods and,
    for a pod that mounts the bucket, the FUSE sidecar, for a fine-tune (a sweep's trial)
    Katib's collector (tunekit.backends.gke.node_sizing)."""
    share = node_sizing.pod_share(run.settings.gpu_machine_type, mounts_bucket, collector)
    amounts = {**node_sizing.quantities(share), "nvidia.com/gpu": str(run.settings.gpu_count)}
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
                "labels": {
                    **PART_OF,
                    "pod-security.kubernetes.io/enforce": "baseline",
                    KATIB_INJECTION: "enabled",
                },
            },
        },
        *[
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": meta(run, sa, "identity"),
                "automountServiceAccountToken": False,
            }
            for sa in (TRAIN_SA, SERVE_SA)
        ],
        {
            # Ingress only from the namespace itself (port-forwards go through the kubelet).
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta(run, "same-namespace", "network"),
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
        "metadata": meta(run, name, "credentials"),
        "stringData": data,
    }


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


@dataclass(frozen=True)
class FinetunePod:
    """What every pod of a fine-tune has, a plain Job's or a TrainJob's: labels, annotations,
    the pod's fields and its training container."""

    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict[str, Any]
    container: dict[str, Any]


def finetune_pod(run: Run, job: str, name: str, tracking_uri: str) -> FinetunePod:
    """The fine-tune's pod on the GPU pool: the training container (`containers.finetune`) with
    all of a node's GPUs, its settings file, the run's folder in the bucket as `/workspace`
    (Cloud Storage FUSE), scratch space for a read-only root, the train service account."""
    scratch_volumes, scratch_mounts = _scratch(
        ("dshm", "/dev/shm", "Memory"), ("cache", "/home/tunekit/.cache", ""), ("tmp", "/tmp", "")
    )
    container = _container(
        run,
        containers.finetune(run, job, tracking_uri),
        cuda=True,
        resources=_gpu_resources(run, mounts_bucket=True, collector=True),
        securityContext=_CONTAINER_SECURITY,
        volumeMounts=scratch_mounts,
    )
    return FinetunePod(
        labels={"app.kubernetes.io/name": name, FINETUNE_LABEL: job, **PART_OF},
        annotations={"gke-gcsfuse/volumes": "true"},
        spec={
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
        container=container,
    )


def finetune_job(
    run: Run, job: str, tracking_uri: str, config_yaml: str, attempt: int = 1
) -> list[dict[str, Any]]:
    """The ConfigMap with the job's settings and the workload `<job>-<attempt>` running
    `tunekit.train` into `/workspace/finetune/<job>`: a Job for one process, a Kubeflow
    Trainer TrainJob for more (`finetune_trainjob`).

    `/workspace` is the run's folder in the bucket (Cloud Storage FUSE), so checkpoints survive
    a preempted Spot node and the retried pod resumes from the last one (`--resume`); so does a
    new attempt after a failed one. A preemption is retried without counting as a failure; a
    training process that exits with an error (Python's exit status 1, or 2 for bad arguments)
    fails the Job at once, as a retry would fail the same way; a pod lost otherwise (killed,
    its node gone) is retried; running past `job_deadline_h` fails the Job.
    """
    s = run.settings
    name = f"{job}-{attempt}"
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(run, f"{job}-config", "finetune"),
        "data": {"config.yaml": config_yaml},
    }
    if distributed.launched(s):
        return [configmap, finetune_trainjob(run, job, name, tracking_uri, attempt)]
    pod = finetune_pod(run, job, name, tracking_uri)
    return [
        configmap,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta(
                run, name, "finetune", labels={FINETUNE_LABEL: job, ATTEMPT_LABEL: str(attempt)}
            ),
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
                                "containerName": pod.container["name"],
                                "operator": "In",
                                "values": [1, 2],  # Python's exit on an error; bad arguments
                            },
                        },
                    ]
                },
                "ttlSecondsAfterFinished": 7 * 24 * 3600,
                "template": {
                    "metadata": {"labels": pod.labels, "annotations": pod.annotations},
                    "spec": pod.spec,
                },
            },
        },
    ]


# --- stage 03 on more than one GPU or node: a Kubeflow Trainer TrainJob


def finetune_trainjob(
    run: Run, job: str, name: str, tracking_uri: str, attempt: int
) -> dict[str, Any]:
    """TrainJob `name` on Kubeflow Trainer's `torch-distributed` runtime: `num_nodes` pods of
    the same pod as the single Job's (`finetune_pod`), each running `torchrun -m tunekit.train`
    with `nproc_per_node` processes and all of the node's GPUs.

    What the TrainJob takes where (kubeflow/trainer v2.3.0, pkg/apis/trainer/v1alpha1/
    trainjob_types.go): image, command, args and env go into `trainer` (the runtime's
    container `node` gets them; env may not be set through a patch for it); the pod's other
    fields (service account, security context, placement, volumes, mounts, annotations) into
    a `runtimePatches` entry for replicated job `node`, the only one the runtime has
    (manifests/base/runtimes/torch_distributed.yaml). The Trainer sets torchrun's rendezvous
    (PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR, PET_MASTER_PORT). A
    failed pod is restarted in place by its Job (JobSet's default `restartPolicy: OnFailure`),
    and torchrun's processes resume from the last checkpoint in the bucket; a failed Job fails
    the TrainJob, and a new attempt resumes likewise.
    """
    s = run.settings
    check_trainjob_name(name, s.num_nodes)
    pod = finetune_pod(run, job, name, tracking_uri)
    container = pod.container
    pod_spec = {k: v for k, v in pod.spec.items() if k in TRAINJOB_POD_FIELDS}
    pod_spec["containers"] = [
        {
            "name": TRAINER_CONTAINER,
            "securityContext": container["securityContext"],
            "volumeMounts": container["volumeMounts"],
        }
    ]
    job_labels = {FINETUNE_LABEL: job, ATTEMPT_LABEL: str(attempt)}
    return {
        "apiVersion": TRAINER_API,
        "kind": "TrainJob",
        "metadata": meta(run, name, "finetune", labels=job_labels),
        "spec": {
            "runtimeRef": {
                "apiGroup": TRAINER_GROUP,
                "kind": "ClusterTrainingRuntime",
                "name": TRAINER_RUNTIME,
            },
            "activeDeadlineSeconds": int(s.job_deadline_h * 3600),
            "trainer": {
                "image": container["image"],
                "command": container["command"],
                "args": container["args"],
                "env": container["env"],
                "numNodes": s.num_nodes,
                "numProcPerNode": s.nproc_per_node,
                "resourcesPerNode": container["resources"],
            },
            "runtimePatches": [
                {
                    "manager": TRAINER_PATCH_MANAGER,
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {
                                        "name": TRAINER_JOB,
                                        "template": {
                                            "metadata": {"labels": {**job_labels, **PART_OF}},
                                            "spec": {
                                                "template": {
                                                    "metadata": {
                                                        "labels": pod.labels,
                                                        "annotations": pod.annotations,
                                                    },
                                                    "spec": pod_spec,
                                                }
                                            },
                                        },
                                    }
                                ]
                            }
                        }
                    },
                }
            ],
        },
    }


def check_trainjob_name(name: str, num_nodes: int) -> None:
    """Refuse a name the Trainer accepts and then cannot build: JobSet names each pod
    `<name>-node-0-<index>-<5 characters>`, a DNS label of at most 63 (jobset v0.12.0
    pkg/webhooks/jobset_webhook.go), so the name has 63 - 14 - digits(num_nodes - 1)."""
    limit = 63 - 14 - len(str(num_nodes - 1))
    if len(name) > limit or not _DNS_LABEL.match(name):
        raise ValueError(
            f"TrainJob name {name!r}: at most {limit} characters for {num_nodes} nodes, "
            "lowercase letters, digits and '-', starting with a letter"
        )


# --- stage 05: FastAPI Deployment + Service


def serve_deployment(run: Run, model_uri: str, version: str, tracking_uri: str) -> list[dict]:
    """`python -m tunekit.serve` on the champion: a Deployment (probes on /healthz and /readyz)
    and a ClusterIP Service on port 80.

    A new version replaces the pod rather than starting a second one beside it (`Recreate`: a
    rolling update would need another GPU node). A base model the fine-tune placed itself
    (tiny-gemma2) lives in the run's bucket folder, at the path the logged model records, so
    the pod mounts that folder read-only at the same place.
    """
    labels = {"app.kubernetes.io/name": "tunekit-serve"}
    health = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10}
    scratch_volumes, scratch_mounts = _scratch(
        ("cache", "/home/tunekit/.cache", ""), ("tmp", "/tmp", "")
    )
    placed_base = places_base(run.settings.model_id)
    if placed_base:
        scratch_volumes.append(_workspace_volume(run, read_only=True))
    container = _container(
        run,
        containers.serve(run, model_uri, version, tracking_uri),
        cuda=True,
        resources=_gpu_resources(run, mounts_bucket=placed_base),
        startupProbe={**health, "failureThreshold": 90},  # loading the model: up to 15 min
        livenessProbe=health,
        readinessProbe={"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        securityContext=_CONTAINER_SECURITY,
        volumeMounts=scratch_mounts,
    )
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(run, "tunekit-serve", "serving"),
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {
                        "labels": {**labels, **PART_OF},
                        **({"annotations": {"gke-gcsfuse/volumes": "true"}} if placed_base else {}),
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
            "metadata": meta(run, "tunekit-serve", "serving"),
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
    baked in) loading the model KServe's storage initializer put in /mnt/models (KServe mounts
    it, so the container does not). The kit's runtime loads and runs the model off MLServer's
    event loop, so the probes answer while it loads and under load."""

    def probe(path: str, **timing: int) -> dict[str, Any]:  # a fresh object each: no YAML alias
        return {"httpGet": {"path": path, "port": "http"}, **timing}

    container = _container(
        run,
        containers.mlserver(run, tracking_uri, version),
        mounts=False,
        cuda=True,  # its InferenceService gives it the GPU node
        securityContext={**_CONTAINER_SECURITY, "readOnlyRootFilesystem": False},
        resources={
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"cpu": "1", "memory": "2Gi"},
        },
        # the server starts: up to 5 min
        startupProbe=probe("/v2/health/live", periodSeconds=10, failureThreshold=30),
        livenessProbe=probe("/v2/health/live", periodSeconds=10),
        # every model loaded (mlserver/handlers/dataplane.py `DataPlane.ready`)
        readinessProbe=probe("/v2/health/ready", periodSeconds=5),
    )
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": meta(run, "tunekit-mlserver", "serving"),
        "spec": {
            "supportedModelFormats": [{"name": "mlflow", "version": "2", "autoSelect": False}],
            "protocolVersions": ["v2"],
            "containers": [container],
        },
    }


def kserve_namespace() -> dict[str, Any]:
    """KServe's namespace, which its release's kserve.yaml no longer creates (v0.17 on)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KSERVE_NAMESPACE}}


def _inference_service(run: Run, name: str, model: dict[str, Any]) -> dict[str, Any]:
    """An InferenceService (Standard mode, on the GPU pool) whose predictor serves `model`
    from `storageUri`, with the serving account and the GPU resources of the other servers."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta(
            run, name, "serving", annotations={"serving.kserve.io/deploymentMode": KSERVE_MODE}
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
            # the logged pyfunc model keeps the adapter in artifacts/peft (tunekit.pyfunc_model)
            f"--lora-modules={s.registered_model_name}-lora={MODEL_DIR}/artifacts/peft",
            # one structured-output backend, named: with "auto", a grammar xgrammar cannot
            # parse goes to another backend that the engine then compiles with xgrammar and
            # dies (vllm-project/vllm#43920); named, a bad grammar is a 400. vLLM 0.24's flag
            # takes JSON (vllm/config/structured_outputs.py); KServe drops unknown flags, and
            # the dotted form, unread (huggingfaceserver/__main__.py parse_known_args)
            '--structured-outputs-config={"backend":"xgrammar"}',
        ],
        "env": _secret_env(HF_TOKEN),
    }
    return _inference_service(run, name, model)


def vllm_serves(run: Run) -> bool:
    """The vLLM InferenceService needs a Hub base model (not tiny-gemma2 or a local folder) and
    an adapter of LoRA weights only (vLLM 0.24.0, in KServe 0.21's image, refuses
    `modules_to_save`: vllm/lora/peft_helper.py)."""
    s = run.settings
    return not is_local_model(s.model_id) and not s.lora_modules_to_save
