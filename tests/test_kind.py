"""ci/kind-e2e.sh's pure part: the gke dry run's objects and Helm values rewritten for kind.

The script needs Docker (GitHub Actions runs it); this machine has no Docker engine. What it
would apply is built by ci/kind_manifests.py, tested here on a real dry run of stages 01-05
with the tiny model, the script's own settings.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

import tunekit
from tunekit.backends import containers, mlflow_chart
from tunekit.backends.gke import workloads

from .conftest import REPO

sys.path.insert(0, str(REPO / "ci"))
import kind_manifests

sys.path.remove(str(REPO / "ci"))

TAG = "0.1.0"


@pytest.fixture(scope="module")
def kind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The script's dry run (stages 01-05, tiny-gemma2), then its rewrite for kind."""
    run_dir = tmp_path_factory.mktemp("kind") / "run"
    run = tunekit.start_run(run_dir, profile="gke", dry_run=True, project_id="kind-e2e",
                            model_id="tiny-gemma2", dataset="synthetic", max_steps=30)  # fmt: skip
    for stage in (tunekit.create_cluster, tunekit.start_mlflow, tunekit.finetune,
                  tunekit.register_model, tunekit.deploy_simple):  # fmt: skip
        stage(run)
    out = kind_manifests.main(run_dir, TAG)
    import yaml

    objects = [o for p in sorted(out.glob("0*.yaml")) for o in yaml.safe_load_all(p.read_text())]
    values = yaml.safe_load((out / "mlflow-values.yaml").read_text())
    yield {"run": run, "objects": objects, "values": values}


def _containers(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec")
        found += [(obj["metadata"]["name"], c) for c in (pod or {}).get("containers", [])]
    return found


def test_images_the_kit_builds_come_from_kind_and_others_stay(kind):
    """The old rewrite took `image.rsplit("/", 1)[1]` of every image: IndexError on
    `postgres:17.6-bookworm`, which has no slash."""
    images = {name: c["image"] for name, c in _containers(kind["objects"])}
    assert images["postgres"] == workloads.POSTGRES_IMAGE
    assert kind_manifests.kit_image(workloads.POSTGRES_IMAGE, TAG) == workloads.POSTGRES_IMAGE
    assert images["tunekit-serve"] == f"tunekit/serve:{TAG}"
    assert any(i == f"tunekit/finetune:{TAG}" for i in images.values())


def test_only_the_containers_that_want_a_gpu_get_the_fake_one(kind):
    """The node advertises one fake nvidia.com/gpu; the old rewrite gave it to every pod
    template, PostgreSQL first, so the Job could never be scheduled."""
    wants = {name: "nvidia.com/gpu" in c["resources"].get("limits", {})
             for name, c in _containers(kind["objects"])}  # fmt: skip
    assert wants.pop("postgres") is False
    assert wants and all(wants.values())  # the Job and the FastAPI server
    postgres = next(c for n, c in _containers(kind["objects"]) if n == "postgres")
    assert postgres["resources"]["requests"]["memory"] == "512Mi"  # untouched


def test_the_job_and_the_server_share_the_workspace_volume(kind):
    """The logged model records its tiny base under /workspace/models (the Job's --models-dir);
    the FastAPI pod loads it from there, so it mounts the same volume, read-only."""
    pods = {o["metadata"]["name"]: o["spec"]["template"]["spec"]
            for o in kind["objects"] if o["kind"] in ("Job", "Deployment")}  # fmt: skip
    serve = pods.pop("tunekit-serve")
    (job,) = pods.values()
    for pod, read_only in ((job, False), (serve, True)):
        volume = next(v for v in pod["volumes"] if v["name"] == "workspace")
        assert volume == {"name": "workspace", "persistentVolumeClaim": {
            "claimName": kind_manifests.WORKSPACE_CLAIM, "readOnly": read_only}}  # fmt: skip
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert containers.MOUNT_PATHS[containers.WORKSPACE] in mounts
    assert "--models-dir" in job["containers"][0]["args"]
    claims = [o for o in kind["objects"] if o["kind"] == "PersistentVolumeClaim"]
    assert [c["metadata"]["name"] for c in claims] == [kind_manifests.WORKSPACE_CLAIM]


def test_mlflow_keeps_artifacts_on_a_writable_volume(kind):
    """With GCS off the chart's destination is ./mlartifacts, under the read-only root."""
    values = kind["values"]
    args = mlflow_chart.server_args(values, "postgresql+psycopg2://")
    assert f"--artifacts-destination={kind_manifests.ARTIFACTS}" in args
    assert {"name": "artifacts", "mountPath": kind_manifests.ARTIFACTS} in values[
        "extraVolumeMounts"
    ]
    images = mlflow_chart.init_container_images(values)
    assert images["mlflow-db-migration"] == f"tunekit/mlflow:{TAG}"  # the server's own
    assert not [o for o in kind["objects"] if o["kind"] == "Secret"]  # the script makes them


def test_the_script_uses_the_rewrite_and_the_chart_pin():
    script = (REPO / "ci" / "kind-e2e.sh").read_text()
    assert '"$PY" ci/kind_manifests.py "$RUN_DIR" "$TAG"' in script
    assert "mlflow_chart" in script and "--version 1." not in script
    for secret in ("mlflow-db:mlflow", "mlflow-auth:admin", "mlflow-reader:reader"):
        assert secret in script


def test_the_scripts_python_calls_what_the_kit_has():
    """The script's Python (here-documents) runs only on GitHub Actions with Docker: each kit
    function or Gke method it calls must exist (a renamed one fails there, not here)."""
    import re

    import tunekit
    from tunekit.backends.gke import Gke

    script = (REPO / "ci" / "kind-e2e.sh").read_text()
    snippets = re.findall(r"<<'PYEOF'\n(.*?)\nPYEOF", script, re.S)
    assert snippets
    for snippet in snippets:
        compile(snippet, "kind-e2e.sh", "exec")
        for method in re.findall(r"Gke\(\)\.(\w+)\(", snippet):
            assert callable(getattr(Gke, method, None)), f"Gke has no {method}"
        for name in re.findall(r"\btunekit\.(\w+)\(", snippet):
            assert callable(getattr(tunekit, name, None)), f"tunekit has no {name}"
