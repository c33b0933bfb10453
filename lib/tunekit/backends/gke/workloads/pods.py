"""What every pod of the gke profile is made of: names and labels, the kit's containers
as pod containers, security, GPU placement and resources, scratch space; the namespace
(stage 01) and Secrets."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tunekit import credentials, gpu_stack
from tunekit.backends import containers
from tunekit.backends.containers import MOUNT_PATHS, Container, SecretRef
from tunekit.backends.gke import node_sizing
from tunekit.backends.gke.kube import GKE_ACCELERATOR_LABEL
from tunekit.run import Run

K8S_VERSION = "1.34"  # the Kubernetes minor version the manifests are validated against
PART_OF = {"app.kubernetes.io/part-of": "tunekit"}
TRAIN_SA, SERVE_SA, MLFLOW_SA = "tunekit-train", "tunekit-serve", "mlflow"
HF_SECRET = containers.HF_SECRET
MLFLOW_AUTH_SECRET, MLFLOW_READER_SECRET = credentials.ADMIN, credentials.READER
MLFLOW_DB_SECRET = credentials.DATABASE
MODEL_DIR = MOUNT_PATHS[containers.MODELS]
MLFLOW_PORT, SERVE_PORT, POSTGRES_PORT = 5000, containers.SERVE_PORT, 5432
UID = 10001  # the images' non-root user
SWEEP_LABEL = "tunekit.dev/sweep"  # a sweep's trial Jobs carry its id
# Katib's webhook adds its metrics collector to a sweep's trial pods only in namespaces with
# this label (katib v0.19.0 manifests/v1beta1/components/webhook/webhooks.yaml); the sweep's
# cluster side is tunekit.backends.gke.katib
KATIB_INJECTION = "katib.kubeflow.org/metrics-collector-injection"
FINETUNE_LABEL = "tunekit.dev/finetune"  # a fine-tune's Jobs (its attempts) carry its folder name
ATTEMPT_LABEL = "tunekit.dev/attempt"  # and their attempt's number

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


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


def container_env(container: Container) -> list[dict[str, Any]]:
    """Plain values, then variables from Secrets (optional: absent keys are left unset)."""
    plain = [{"name": k, "value": container.in_pod(v)} for k, v in container.env.items()]
    return plain + secret_env(container.secret_env)


def secret_env(refs: Mapping[str, SecretRef]) -> list[dict[str, Any]]:
    return [
        {
            "name": k,
            "valueFrom": {"secretKeyRef": {"name": r.secret, "key": r.key, "optional": True}},
        }
        for k, r in refs.items()
    ]


def pod_container(
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
    rendered["env"] = container_env(c)
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


CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def gpu_placement(run: Run) -> dict[str, Any]:
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


def gpu_resources(run: Run, mounts_bucket: bool = False, collector: bool = False) -> dict:
    """All of a GPU node's GPUs, and what else the node has room for beside GKE's own pods and,
    for a pod that mounts the bucket, the FUSE sidecar, for a fine-tune (a sweep's trial)
    Katib's collector (tunekit.backends.gke.node_sizing)."""
    share = node_sizing.pod_share(run.settings.gpu_machine_type, mounts_bucket, collector)
    amounts = {**node_sizing.quantities(share), "nvidia.com/gpu": str(run.settings.gpu_count)}
    return {"requests": amounts, "limits": dict(amounts)}


def scratch(*mounts: tuple[str, str, str]) -> tuple[list[dict], list[dict]]:
    """emptyDir volumes (name, mountPath, medium) for a read-only root filesystem."""
    volumes = [{"name": n, "emptyDir": {"medium": m} if m else {}} for n, _, m in mounts]
    return volumes, [{"name": n, "mountPath": p} for n, p, _ in mounts]


def workspace_volume(run: Run, read_only: bool = False) -> dict[str, Any]:
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
