"""What one pod may request on a GKE GPU node, so that the pod fits on the node it asks for.

A GPU pod takes all of its node's GPUs (`gpu_count` per node and per pod), so it may take the
rest of the node too: the machine's memory and CPUs less what GKE reserves for the kubelet and
the system, the kubelet's eviction threshold, GKE's own DaemonSets, and, for a pod that mounts
the bucket, the Cloud Storage FUSE sidecar the driver injects (a native sidecar: its requests add
to the pod's). A pod that asks for more stays Pending, and the cluster autoscaler never scales
the GPU pool up from zero for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tunekit.machines import MACHINES, Machine

MIB_PER_GIB = 1024


@dataclass(frozen=True)
class Resources:
    cpu_m: int  # millicores
    memory_mib: int

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu_m - other.cpu_m, self.memory_mib - other.memory_mib)


# gcs-fuse-csi-driver deploy/base/webhook/deployment.yaml: --sidecar-cpu-request=250m,
# --sidecar-memory-request=256Mi (no limits on Standard clusters).
GCSFUSE_SIDECAR = Resources(cpu_m=250, memory_mib=256)
# GKE's per-node system pods have no documented total; measured on GKE 1.29
# (github.com/cryptnono/cryptnono/issues/34): fluentbit-gke 105m/230Mi, gke-metadata-server
# 100m/100Mi; with anetd, netd, pdcsi-node, the GPU device plugin and driver installer and the
# metrics agent, a budget of 1 CPU and 1 GiB.
SYSTEM_PODS = Resources(cpu_m=1000, memory_mib=1024)
# A sweep's trial pod also holds Katib's metrics collector (its requests when katib-config sets
# none: katib v0.19.0 pkg/apis/config/v1beta1/defaults.go DefaultCPURequest "50m",
# DefaultMemRequest "10Mi"); a fine-tune pod leaves room for it, as the trial is its Job.
KATIB_COLLECTOR = Resources(cpu_m=50, memory_mib=10)
# SYSTEM_PODS is an estimate from one measurement: what a pod requests stays at least this far
# under what the node has left, so a DaemonSet GKE adds does not keep the pod Pending.
MARGIN = Resources(cpu_m=250, memory_mib=256)
EVICTION_MIB = 100  # the kubelet's memory.available hard eviction threshold on GKE


def _tiered(amount: float, tiers: list[tuple[float, float]]) -> float:
    """Sum of `rate` over each tier's share of `amount`; tiers are (upper bound, rate)."""
    reserved, lower = 0.0, 0.0
    for upper, rate in tiers:
        reserved += rate * max(0.0, min(amount, upper) - lower)
        lower = upper
    return reserved


def allocatable(machine: Machine) -> Resources:
    """The node's allocatable CPU and memory (GKE Standard's reservations: cloud.google.com/
    kubernetes-engine/docs/concepts/plan-node-sizes; the cluster autoscaler's
    cloudprovider/gce/reserved.go), taken off the memory the kernel leaves (total/64 + 16 MiB,
    and 64 MiB swiotlb above 3 GiB), so it is no more than either predicts."""
    total = machine.memory_gib * MIB_PER_GIB
    kernel = total / 64 + 16 + (64 if total > 3 * MIB_PER_GIB else 0)
    gib_tiers = [(4, 0.25), (8, 0.20), (16, 0.10), (128, 0.06), (math.inf, 0.02)]
    reserved = (
        255.0 if total < MIB_PER_GIB else _tiered(machine.memory_gib, gib_tiers) * MIB_PER_GIB
    )
    cpu_tiers = [(1, 0.06), (2, 0.01), (4, 0.005), (math.inf, 0.0025)]
    cpu = machine.vcpus * 1000 - _tiered(machine.vcpus, cpu_tiers) * 1000
    memory = total - kernel - reserved - EVICTION_MIB
    return Resources(math.floor(cpu), math.floor(memory))


def pod_share(machine_type: str, mounts_bucket: bool, collector: bool = False) -> Resources:
    """What a pod that takes the whole node may request: allocatable less the system pods,
    (when it mounts the bucket) the FUSE sidecar, (`collector`) Katib's collector and the
    MARGIN; whole GiB, and CPUs in steps of 0.5."""
    free = allocatable(MACHINES[machine_type]) - SYSTEM_PODS - MARGIN
    if mounts_bucket:
        free = free - GCSFUSE_SIDECAR
    if collector:
        free = free - KATIB_COLLECTOR
    return Resources(free.cpu_m // 500 * 500, free.memory_mib // MIB_PER_GIB * MIB_PER_GIB)


def quantities(share: Resources) -> dict[str, str]:
    """`cpu` and `memory` as Kubernetes quantities."""
    cpu = f"{share.cpu_m // 1000}" if share.cpu_m % 1000 == 0 else f"{share.cpu_m}m"
    return {"cpu": cpu, "memory": f"{share.memory_mib // MIB_PER_GIB}Gi"}
