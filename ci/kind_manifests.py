"""A gke dry run's manifests and Helm values, changed to run on a kind cluster (ci/kind-e2e.sh).

kind has no Cloud Storage, no Artifact Registry and no GPU, so:
- the kit's own images become the locally built `tunekit/<name>:<tag>`; others (PostgreSQL's)
  stay as they are;
- the bucket folder (a Cloud Storage FUSE volume) becomes one PersistentVolumeClaim shared by
  the Job, which writes checkpoints and builds tiny-gemma2 in it, and the FastAPI pod, which
  loads that base model from the path the logged model records;
- a container that asks for a GPU gets the node's one fake `nvidia.com/gpu` and a share of the
  node that kind can give; nothing else gets a GPU;
- Secrets are left out: the script creates them with real values;
- MLflow runs the kit's image, its migration too, with artifacts in a volume instead of GCS.

    python ci/kind_manifests.py RUN_DIR TAG   # writes RUN_DIR/kind/
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from tunekit.backends.containers import IMAGES

GPU = "nvidia.com/gpu"
WORKSPACE_CLAIM = "tunekit-workspace"
ARTIFACTS = "/mlartifacts"
KIND_SHARE = {  # what one pod may take on a GitHub runner's kind node (4 CPUs, 16 GB)
    "requests": {"cpu": "500m", "memory": "2Gi", GPU: "1"},
    "limits": {"memory": "6Gi", GPU: "1"},
}


def kit_image(image: str, tag: str) -> str:
    """`tunekit/<name>:<tag>` for one of the kit's images (any registry); others unchanged."""
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"tunekit/{name}:{tag}" if name in IMAGES and "/" in image else image


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    return obj.get("spec", {}).get("template", {}).get("spec")


def for_kind(obj: dict[str, Any], tag: str) -> dict[str, Any] | None:
    """`obj` as kind runs it, or None for what the script makes itself (Secrets)."""
    if obj["kind"] == "Secret":
        return None
    obj = copy.deepcopy(obj)
    pod = _pod_spec(obj)
    if pod is None:
        return obj
    for container in pod.get("containers", []):
        container["image"] = kit_image(container["image"], tag)
        if GPU in container.get("resources", {}).get("limits", {}):
            container["resources"] = copy.deepcopy(KIND_SHARE)
    for volume in pod.get("volumes", []):
        if "csi" in volume:
            read_only = volume.pop("csi").get("readOnly", False)
            volume["persistentVolumeClaim"] = {"claimName": WORKSPACE_CLAIM, "readOnly": read_only}
    return obj


def workspace_claim(namespace: str) -> dict[str, Any]:
    """The volume that stands in for the run's bucket folder (kind's local-path storage)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": WORKSPACE_CLAIM, "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}},
    }


def values_for_kind(values: dict[str, Any], tag: str) -> dict[str, Any]:
    """The chart's values with the kit's image from kind and artifacts on a volume."""
    values = copy.deepcopy(values)
    for image in (values["image"], values["initImages"]["mlflowDbMigration"]):
        image["repository"], image["tag"] = "tunekit/mlflow", tag
    # without GCS the chart's default destination is ./mlartifacts, under the read-only root
    values["artifactRoot"] = {
        "proxiedArtifactStorage": True,
        "gcs": {"enabled": False},
        "defaultArtifactsDestination": ARTIFACTS,
    }
    values["extraVolumes"] = [{"name": "artifacts", "emptyDir": {}}]
    values["extraVolumeMounts"] = [{"name": "artifacts", "mountPath": ARTIFACTS}]
    return values


def main(run_dir: Path, tag: str) -> Path:
    out = run_dir / "kind"
    out.mkdir(exist_ok=True)
    namespace = ""
    for path in sorted((run_dir / "gke" / "manifests").glob("*.yaml")):
        docs = [d for obj in yaml.safe_load_all(path.read_text()) if (d := for_kind(obj, tag))]
        namespace = namespace or next(
            (d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"), ""
        )
        if path.name.startswith("01-"):
            docs.append(workspace_claim(namespace))
        (out / path.name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    values = yaml.safe_load((run_dir / "gke" / "helm" / "mlflow-values.yaml").read_text())
    (out / "mlflow-values.yaml").write_text(yaml.safe_dump(values_for_kind(values, tag)))
    return out


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), sys.argv[2]))
