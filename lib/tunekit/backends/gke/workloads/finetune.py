"""Stage 03: the fine-tune as a Job (one process) or a Kubeflow Trainer TrainJob (more)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunekit import distributed
from tunekit.backends import containers
from tunekit.backends.gke.kube import TRAINER_API
from tunekit.backends.gke.workloads.pods import (
    ATTEMPT_LABEL,
    CONTAINER_SECURITY,
    DNS_LABEL,
    FINETUNE_LABEL,
    PART_OF,
    TRAIN_SA,
    gpu_placement,
    gpu_resources,
    meta,
    pod_container,
    pod_security,
    scratch,
    workspace_volume,
)
from tunekit.run import Run

# Kubeflow Trainer (tunekit.backends.gke.addons installs it); its `torch-distributed`
# runtime, whose one replicated job and container are both `node` (v2.3.0
# manifests/base/runtimes/torch_distributed.yaml); a patch's manager is a domain-prefixed
# path (pkg/runtime/framework/plugins/jobset/jobset.go `IsDomainPrefixedPath`)
TRAINER_GROUP = TRAINER_API.split("/")[0]
TRAINER_RUNTIME, TRAINER_JOB, TRAINER_CONTAINER = "torch-distributed", "node", "node"
TRAINER_PATCH_MANAGER = "tunekit.dev/tunekit"
# PodSpecPatch's fields (trainjob_types.go): what a runtime patch may set on the pods
TRAINJOB_POD_FIELDS = ("serviceAccountName", "securityContext", "nodeSelector", "tolerations",
                       "volumes", "affinity", "imagePullSecrets")  # fmt: skip


# --- stage 03: the fine-tune Job


@dataclass(frozen=True)
class FinetunePod:
    """What every pod of a fine-tune has, a plain Job's or a TrainJob's: labels, annotations,
    the pod's fields and its training container."""

    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict[str, Any]
    container: dict[str, Any]


def finetune_pod(
    run: Run, job: str, name: str, tracking_uri: str, params: Mapping[str, str] | None = None
) -> FinetunePod:
    """The fine-tune's pod on the GPU pool: the training container (`containers.finetune`) with
    all of a node's GPUs, its settings file, the run's folder in the bucket as `/workspace`
    (Cloud Storage FUSE), scratch space for a read-only root, the train service account."""
    scratch_volumes, scratch_mounts = scratch(
        ("dshm", "/dev/shm", "Memory"), ("cache", "/home/tunekit/.cache", ""), ("tmp", "/tmp", "")
    )
    container = pod_container(
        run,
        containers.finetune(run, job, tracking_uri, params),
        cuda=True,
        resources=gpu_resources(run, mounts_bucket=True, collector=True),
        securityContext=CONTAINER_SECURITY,
        volumeMounts=scratch_mounts,
    )
    return FinetunePod(
        labels={"app.kubernetes.io/name": name, FINETUNE_LABEL: job, **PART_OF},
        annotations={"gke-gcsfuse/volumes": "true"},
        spec={
            "serviceAccountName": TRAIN_SA,
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": pod_security(),
            **gpu_placement(run),
            "containers": [container],
            "volumes": [
                {"name": "config", "configMap": {"name": f"{job}-config"}},
                workspace_volume(run),
                *scratch_volumes,
            ],
        },
        container=container,
    )


def finetune_objects(
    run: Run,
    job: str,
    tracking_uri: str,
    config_yaml: str,
    attempt: int = 1,
    params: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The ConfigMap with the job's settings and the workload `<job>-<attempt>` running
    `tunekit.train` into `/workspace/finetune/<job>`: a Job for one process, a Kubeflow
    Trainer TrainJob for more (`finetune_trainjob`).

    `/workspace` is the run's folder in the bucket (Cloud Storage FUSE), so checkpoints survive
    a preempted Spot node and the retried pod resumes from the last one (`--resume`); so does a
    new attempt after a failed one. A preemption is retried without counting as a failure; a
    training process that exits with an error (Python's exit status 1, or 2 for bad arguments)
    fails the Job at once, as a retry would fail the same way; a pod lost otherwise (killed,
    its node gone) is retried; running past `job_deadline_h` fails the Job. `params`: a
    sweep's trial (`containers.finetune`).
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
    pod = finetune_pod(run, job, name, tracking_uri, params)
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
    if len(name) > limit or not DNS_LABEL.match(name):
        raise ValueError(
            f"TrainJob name {name!r}: at most {limit} characters for {num_nodes} nodes, "
            "lowercase letters, digits and '-', starting with a letter"
        )
