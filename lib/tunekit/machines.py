"""The GPU machines and zones of Google Cloud the kit knows: which accelerator each machine
carries and how many, and which zones of a region have each accelerator. Settings check a
choice against them; the gke profile sizes its pods (`backends.gke.node_sizing`) and places
its GPU pool (terraform's gpu_node_locations) from them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Machine:
    vcpus: int
    memory_gib: float  # Compute Engine's "GB" of machine memory are GiB
    gpus: int
    accelerator: str  # the GKE accelerator name (settings.gpu_type)


# Accelerator-optimized machines (cloud.google.com/compute/docs/accelerator-optimized-machines;
# GPU counts as in GoogleCloudPlatform/cluster-toolkit modules/internal/gpu-definition/main.tf).
MACHINES: dict[str, Machine] = {
    **{f"g2-standard-{c}": Machine(c, 4 * c, g, "nvidia-l4")
       for c, g in ((4, 1), (8, 1), (12, 1), (16, 1), (24, 2), (32, 1), (48, 4), (96, 8))},
    **{f"a2-highgpu-{g}g": Machine(12 * g, 85 * g, g, "nvidia-tesla-a100") for g in (1, 2, 4, 8)},
    **{f"a2-ultragpu-{g}g": Machine(12 * g, 170 * g, g, "nvidia-a100-80gb") for g in (1, 2, 4, 8)},
    **{f"a3-highgpu-{g}g": Machine(26 * g, 234 * g, g, "nvidia-h100-80gb") for g in (1, 2, 4, 8)},
}  # fmt: skip


# Zones of a region whose machines carry each accelerator (Compute Engine's machine types by
# zone, as listed by the API: skypilot-org/skypilot-catalog catalogs/v8/gcp/vms.csv @006059e0,
# e.g. g2-standard-8 in us-east4-a and -c but not -b; check a region not listed with
# `gcloud compute accelerator-types list --filter=zone~REGION`). A node pool without
# node_locations takes the cluster's zones, which GKE picks without looking at accelerators.
ZONES: dict[str, dict[str, tuple[str, ...]]] = {
    "nvidia-l4": {"us-central1": ("a", "b", "c"), "us-east4": ("a", "c"),
                  "europe-west4": ("a", "b", "c"), "asia-southeast1": ("a", "b", "c")},
    "nvidia-h100-80gb": {"us-central1": ("a", "b", "c"), "us-east4": ("a", "b", "c"),
                         "europe-west4": ("b", "c"), "asia-southeast1": ("b", "c")},
    "nvidia-tesla-a100": {"us-central1": ("a", "b", "c", "f"), "europe-west4": ("a", "b"),
                          "asia-southeast1": ("a", "b", "c")},
    "nvidia-a100-80gb": {"us-central1": ("a", "c"), "us-east4": ("c",),
                         "europe-west4": ("a",), "asia-southeast1": ("c",)},
}  # fmt: skip


def gpu_zones(accelerator: str, region: str) -> list[str]:
    """The zones of `region` known to have `accelerator`; [] for a pairing not in ZONES."""
    return [f"{region}-{z}" for z in ZONES.get(accelerator, {}).get(region, ())]
