"""Profile gke against the code that will consume what it renders.

Nothing here reaches a cluster: there is no GKE API, no Helm and no Docker on the machines
this runs on. Instead, each test states a fact of the upstream code or documentation that a
rendered object, a Helm value or a terraform block depends on (its source is named next to
it), and checks the kit against it. A schema cannot see these: every object here validated
before the facts were checked, and would not have worked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

import tunekit
from tunekit.backends import mlflow_chart
from tunekit.backends.gke import addons, node_sizing, workloads
from tunekit.settings import SettingsError

from .conftest import REPO, gke_series, helm_values, rendered, rendered_one

TERRAFORM = REPO / "terraform"


# --- MLflow: community-charts/mlflow (tunekit.backends.mlflow_chart models its templates)


def test_mlflow_users_live_in_a_postgres_database_that_is_created(dry_run):
    """Item 1. templates/auth_ini_configmap.yaml: without auth.postgres (or sqliteFullPath) the
    basic-auth database is `sqlite:///basic_auth.db`, relative to the working directory
    /home/mlflow on a read-only root filesystem; MLflow's auth app opens it before it serves
    (mlflow/server/auth/__init__.py: store.init_db), so the pod never becomes ready."""
    values = helm_values(dry_run)
    uri = mlflow_chart.auth_database_uri(values)
    assert uri.startswith("postgresql+psycopg2://"), uri
    host, database = re.fullmatch(r".*@([^:/]+):\d+/(\w+)", uri).groups()
    assert host == f"postgres.{dry_run.settings.namespace}.svc.cluster.local"
    assert values["auth"]["postgres"]["existingSecret"]["name"] == workloads.MLFLOW_DB_SECRET
    # the chart creates no database: stage 02 does, in the PostgreSQL pod, before the chart
    # starts MLflow (tests/test_postgres.py runs the same psql input against a real server)
    assert f"WHERE datname = '{database}'" in workloads.CREATE_AUTH_DATABASE
    script = (dry_run.dir / "gke" / "commands.sh").read_text()
    create = script.find("kubectl exec -i -n=tunekit statefulset/postgres -c postgres")
    assert create > script.find("rollout status statefulset/postgres") > 0
    assert script.find(workloads.CREATE_AUTH_DATABASE, create) > create
    assert script.find("helm upgrade --install mlflow") > create
    assert database != values["backendStore"]["postgres"]["database"]  # a database of its own


def test_the_images_are_built_before_the_chart_runs_them(dry_run):
    """Stage 02's chart runs the kit's MLflow image (and, for the migration, the same): Cloud
    Build must have pushed it, or the pod waits in ImagePullBackOff until `helm --wait` gives
    up. The images were built in stage 03."""
    script = (dry_run.dir / "gke" / "commands.sh").read_text()
    build, helm = script.find("gcloud builds submit"), script.find("helm upgrade --install")
    assert 0 < build < helm
    assert "mlflow:${_TAG}" in (REPO / "cloudbuild.yaml").read_text()


def test_the_chart_default_auth_database_is_the_relative_sqlite_file():
    """The model of the template itself (rendered with Helm 4.2.3 from chart 1.11.5: the
    default gives `database_uri = sqlite:///basic_auth.db`; sqliteFullPath needs a trailing
    slash: "/tmp" gives sqlite:////tmpbasic_auth.db)."""
    assert mlflow_chart.auth_database_uri({"auth": {"enabled": True}}) == "sqlite:///basic_auth.db"
    tmp = {"auth": {"enabled": True, "sqliteFullPath": "/tmp"}}
    assert mlflow_chart.auth_database_uri(tmp) == "sqlite:////tmpbasic_auth.db"


def test_the_schema_migration_runs_the_servers_own_mlflow(dry_run):
    """Item 2. templates/deployment.yaml: init container `mlflow-db-migration` runs
    `initImages.mlflowDbMigration` (default burakince/mlflow:<appVersion> = 3.15.1), whose
    alembic head is 6f8d9c3b2a1e; MLflow 3.17.2's head is dc11669786a5 and its server exits on
    any other (mlflow/store/db/utils.py `_verify_schema`: "Detected out-of-date database
    schema"). The migration must run the very image the server runs."""
    values = helm_values(dry_run)
    images = mlflow_chart.init_container_images(values)
    server = f"{values['image']['repository']}:{values['image']['tag']}"
    assert images["mlflow-db-migration"] == server == workloads.image(dry_run, "mlflow")
    # and that image's MLflow is the kit's
    pinned = re.search(r'"mlflow\[auth\]==([\d.]+)"', (REPO / "pyproject.toml").read_text())[1]
    dockerfile = (REPO / "docker" / "mlflow" / "Dockerfile").read_text()
    assert f'"mlflow[auth]=={pinned}"' in dockerfile
    # the defaults this guards against
    assert mlflow_chart.init_container_images({"backendStore": {"databaseMigration": True}}) == {
        "mlflow-db-migration": f"burakince/mlflow:{mlflow_chart.APP_VERSION}"
    }


def test_mlflow_runs_as_the_images_user(dry_run):
    """Item 8. values.yaml: `securityContext` sets runAsUser/runAsGroup 1001 on the MLflow
    container and every init container; Helm merges our map into it key by key, and a
    container's runAsUser wins over the pod's. Our image's user is 10001
    (docker/mlflow/Dockerfile), which owns its home; 1001 has no passwd entry there."""
    context = mlflow_chart.container_security_context(helm_values(dry_run))
    assert context["runAsUser"] == workloads.UID and context["runAsGroup"] == workloads.UID
    assert f"--uid {workloads.UID}" in (REPO / "docker" / "mlflow" / "Dockerfile").read_text()
    assert mlflow_chart.container_security_context({})["runAsUser"] == 1001  # the default


# Released versions of the mlflow chart in community-charts/helm-charts' index.yaml (gh-pages
# branch, generated 2026-08-22T03:00:10Z; tags mlflow-<version>): the newest fifteen.
CHART_RELEASES = {
    "1.11.5": "3.15.1", "1.11.4": "3.15.1", "1.11.3": "3.15.0", "1.11.2": "3.14.0",
    "1.11.1": "3.14.0", "1.11.0": "3.14.0", "1.10.0": "3.14.0", "1.9.0": "3.14.0",
    "1.8.6": "3.14.0", "1.8.5": "3.13.0", "1.8.4": "3.13.0", "1.8.3": "3.12.0",
    "1.8.2": "3.12.0", "1.8.1": "3.7.0", "1.8.0": "3.6.0",
}  # fmt: skip


def test_the_chart_pin_is_a_release_and_pinned_in_one_place():
    """Item 10. 1.11.7 is in neither the repository's tags nor its index.yaml."""
    assert CHART_RELEASES.get(mlflow_chart.VERSION) == mlflow_chart.APP_VERSION
    pins = re.compile(r"--version[ =]\d+\.\d+\.\d+|1\.11\.7")
    places = [*REPO.glob("ci/*"), *REPO.glob("*.md"), *REPO.glob("lib/tunekit/**/*.py")]
    places.remove(REPO / "lib" / "tunekit" / "backends" / "mlflow_chart.py")  # the one
    stray = [str(p.relative_to(REPO)) for p in places if p.is_file() and pins.search(p.read_text())]
    assert stray == []  # ci/kind-e2e.sh reads mlflow_chart.VERSION too


def test_local_mlflow_gets_the_arguments_the_chart_renders(dry_run):
    """The local profile starts `mlflow server` with mlflow_chart.server_args. Rendered by Helm
    4.2.3 (helm-python-sdk 0.2.2) from chart 1.11.5 with the kit's values of manifests/, the
    container's args are exactly these (the backend URI's credentials come from PG* variables)."""
    values = helm_values(dry_run)
    allowed = values["extraArgs"]["allowedHosts"]
    assert mlflow_chart.server_args(values, "postgresql+psycopg2://") == [
        "--host=0.0.0.0",
        "--port=5000",
        "--backend-store-uri=postgresql+psycopg2://",
        f"--artifacts-destination=gs://{dry_run.settings.bucket}/mlflow",
        "--serve-artifacts",
        "--app-name=basic-auth",
        "--uvicorn-opts='--log-level=info'",
        f"--allowed-hosts={allowed}",
        "--workers=2",
    ]


def test_servers_read_the_registry_as_the_reader_and_the_job_writes_as_the_admin(dry_run):
    """Item 12: serving pods log in as a user that may only read (the admin's login stays with
    the fine-tune, which writes its run, and stage 04, which registers)."""

    def login_secret(container: dict[str, Any]) -> str:
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
                for e in container["env"] if "valueFrom" in e}  # fmt: skip
        assert refs["MLFLOW_TRACKING_USERNAME"] == refs["MLFLOW_TRACKING_PASSWORD"]
        return refs["MLFLOW_TRACKING_USERNAME"]

    job = rendered_one(dry_run, "Job")["spec"]["template"]["spec"]["containers"][0]
    serve = rendered_one(dry_run, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    mlserver = rendered_one(dry_run, "ServingRuntime")["spec"]["containers"][0]
    assert login_secret(job) == workloads.MLFLOW_AUTH_SECRET
    assert login_secret(serve) == login_secret(mlserver) == workloads.MLFLOW_READER_SECRET
    assert helm_values(dry_run)["auth"]["defaultPermission"] == "READ"


# --- KServe: the release on the cluster is the one the objects are validated against


def test_the_cluster_gets_the_kserve_release_the_objects_are_checked_against(dry_run):
    """tests/schemas.py validates InferenceServices and ServingRuntimes against the kserve
    SDK's types; the cluster installs KSERVE_VERSION's release. A field the SDK knows and the
    installed CRD does not would pass here and be pruned there: they must be one release (the
    PyPI SDK 0.21.0 is KServe v0.21.0: python/kserve/pyproject.toml `version = "0.21.0"`)."""
    from importlib import metadata

    assert f"v{metadata.version('kserve')}" == addons.KSERVE_VERSION
    commands = (dry_run.dir / "gke" / "commands.sh").read_text()
    assert f"kserve/kserve/releases/download/{addons.KSERVE_VERSION}/kserve.yaml" in commands


def test_kserve_installs_into_a_namespace_that_exists_in_standard_mode(dry_run):
    """Since v0.17 install/<version>/kserve.yaml has no Namespace (hack/release/
    generate-install.sh: `yq 'select(.kind != "Namespace")'`; v0.21.0's file opens with a CRD):
    applied to a fresh cluster, its namespaced objects fail. kserve-cluster-resources.yaml
    (v0.21.0) holds LLMInferenceServiceConfigs, admitted by llmisvc-controller-manager's webhook
    (config/webhook/llmisvc, failurePolicy Fail): it must be Available first. The mode once
    called RawDeployment is `Standard` (pkg/constants/constants.go `LegacyRawDeployment ...
    deprecated: use Standard`); the webhook rewrites the old annotation, and the validator
    refuses an update whose annotation differs from the status (inference_service_validation.go
    "deploymentMode cannot be changed"): a server-side re-apply of the old value fights it."""
    commands = (dry_run.dir / "gke" / "commands.sh").read_text()
    install = commands.index("/kserve.yaml")
    namespace = yaml.safe_load(
        (dry_run.dir / "gke" / "addons" / "kserve-namespace.yaml").read_text()
    )
    assert (namespace["kind"], namespace["metadata"]["name"]) == ("Namespace", "kserve")
    assert -1 < commands.index("addons/kserve-namespace.yaml") < install
    # stage 07 deletes manifests/ (its workloads), not KServe while it clears their finalizers
    assert not (dry_run.dir / "gke" / "manifests" / "kserve-namespace.yaml").exists()
    llm = commands.index("deployment/llmisvc-controller-manager")
    assert install < llm < commands.index("/kserve-cluster-resources.yaml")
    assert '\\"defaultDeploymentMode\\": \\"Standard\\"' in commands or (
        '"defaultDeploymentMode": "Standard"' in commands
    )
    for isvc in (o for o in rendered(dry_run) if o["kind"] == "InferenceService"):
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def kserve_predictor_image(isvc: dict[str, Any]) -> str:
    """The image KServe's controller gives the predictor container.

    install/v0.21.0/kserve-cluster-resources.yaml: ClusterServingRuntime
    kserve-huggingfaceserver runs `kserve/huggingfaceserver:v0.21.0`, the CPU build; the CUDA
    build is the same tag with `-gpu`. pkg/controller/v1beta1/inferenceservice/utils/utils.go
    `UpdateImageTag` (v0.20.0): with `nvidia.com/gpu` in the container's *limits* and the server
    type huggingfaceserver (the runtime's `serving.kserve.io/server-type` annotation, else its
    name), "-gpu" is appended unless the tag has it.
    """
    model = isvc["spec"]["predictor"]["model"]
    runtime = model.get("runtime")
    images = {workloads.HF_RUNTIME: f"kserve/huggingfaceserver:{addons.KSERVE_VERSION}"}
    if runtime is None or runtime not in images:
        raise AssertionError(f"predictor runtime {runtime!r}: not KServe's Hugging Face runtime")
    image = model.get("image") or images[runtime]
    if "nvidia.com/gpu" in model.get("resources", {}).get("limits", {}):
        image = image if image.endswith("-gpu") else image + "-gpu"
    return image


def test_the_vllm_predictor_gets_kserves_cuda_build(dry_run):
    """Item 7. The issue's premise does not hold: the controller picks the -gpu
    image itself, given GPU limits and the Hugging Face runtime. The kit names that runtime
    (auto-selection would pick it by priority today, but a cluster with another runtime of
    higher priority for `huggingface` would silently change the image) and keeps the limits."""
    vllm = rendered_one(dry_run, "InferenceService", "-vllm")
    assert kserve_predictor_image(vllm) == f"kserve/huggingfaceserver:{addons.KSERVE_VERSION}-gpu"
    without_gpu = {"spec": {"predictor": {"model": {"runtime": workloads.HF_RUNTIME}}}}
    assert not kserve_predictor_image(without_gpu).endswith("-gpu")


def test_vllm_is_not_offered_an_adapter_it_refuses(tmp_path):
    """vLLM (0.8.5 in KServe 0.15's huggingfaceserver, 0.24.0 in 0.21's) loads no adapter with
    modules_to_save:
    vllm/lora/peft_helper.py "vLLM only supports modules_to_save being None"."""
    base = {"profile": "gke", "dry_run": True, "project_id": "p1"}
    run = tunekit.start_run(tmp_path / "a", **base)
    assert workloads.vllm_serves(run)
    run = tunekit.start_run(tmp_path / "b", **base, lora_modules_to_save=["lm_head"])
    assert not workloads.vllm_serves(run)


def test_gpu_servers_are_replaced_not_surged(dry_run):
    """A rolling update of a one-replica GPU server starts the new pod beside the old one (KServe
    Standard mode: maxSurge 25% rounds up to 1, setDefaultDeploymentSpec), which needs a second GPU
    node; `Recreate` frees the GPU first."""
    assert rendered_one(dry_run, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    for isvc in (o for o in rendered(dry_run) if o["kind"] == "InferenceService"):
        assert isvc["spec"]["predictor"]["deploymentStrategy"] == {"type": "Recreate"}


# --- GKE: nodes, the control plane, terraform


def _pod(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod metadata, pod spec) of a Job or Deployment; an InferenceService's predictor."""
    if obj["kind"] == "InferenceService":
        predictor = obj["spec"]["predictor"]
        return obj["metadata"], {**predictor, "containers": [predictor["model"]]}
    template = obj["spec"]["template"]
    return template["metadata"], template["spec"]


def _mib(quantity: str) -> int:
    units = {"Gi": 1024, "Mi": 1}
    return int(float(quantity[:-2]) * units[quantity[-2:]])


def _millicores(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


@pytest.mark.parametrize("machine", ["g2-standard-8", "g2-standard-12", "a2-highgpu-1g"])
def test_every_gpu_pod_fits_the_node_it_asks_for(tmp_path, machine):
    """Item 5. A pod that asks for more than its node's allocatable stays Pending, and the
    cluster autoscaler never scales the GPU pool from zero for it. Allocatable: the machine's
    memory less GKE's reservation (cloud.google.com/kubernetes-engine/docs/concepts/
    plan-node-sizes: 25% of the first 4 GiB, 20% of the next 4, 10% of the next 8, 6% of the
    next 112, 2% above; 100 MiB eviction threshold), less GKE's DaemonSets; a pod that mounts
    the bucket also carries the FUSE sidecar (gcs-fuse-csi-driver: 250m CPU, 256Mi)."""
    accelerator = node_sizing.MACHINES[machine].accelerator
    run = tunekit.start_run(tmp_path / "r", profile="gke", dry_run=True, project_id="p1",
                            gpu_machine_type=machine, gpu_type=accelerator)  # fmt: skip
    gke_series(run)
    node = node_sizing.allocatable(node_sizing.MACHINES[machine]) - node_sizing.SYSTEM_PODS
    pods = [o for o in rendered(run) if o["kind"] in ("Job", "Deployment", "InferenceService")]
    assert len(pods) == 4  # the Job, FastAPI, MLServer and vLLM
    for obj in pods:
        meta, spec = _pod(obj)
        fuse = meta.get("annotations", {}).get("gke-gcsfuse/volumes") == "true"
        requests = spec["containers"][0]["resources"]["requests"]
        memory = _mib(requests["memory"]) + (node_sizing.GCSFUSE_SIDECAR.memory_mib if fuse else 0)
        cpu = _millicores(requests["cpu"]) + (node_sizing.GCSFUSE_SIDECAR.cpu_m if fuse else 0)
        assert memory <= node.memory_mib and cpu <= node.cpu_m, (obj["kind"], requests, node)
        assert requests["nvidia.com/gpu"] == str(run.settings.gpu_count)


@pytest.mark.parametrize("machine", sorted(node_sizing.MACHINES))
def test_a_sweep_trial_leaves_a_margin_on_every_gpu_machine(machine):
    """A trial pod is the fine-tune's Job plus the FUSE sidecar (250m, 256Mi) and Katib's
    collector (katib v0.19.0 pkg/apis/config/v1beta1/defaults.go: 50m, 10Mi). SYSTEM_PODS is
    an estimate from one measurement on GKE 1.29 (cryptnono/cryptnono#34): what a pod asks
    for stays at least 250m and 256Mi under the node's estimate (on a3-highgpu-2g the Job
    used to leave 50m once the collector was added). The fine-tune Job asks for this share
    (test_every_gpu_pod_fits_the_node_it_asks_for reads it from the rendered Job)."""
    share = node_sizing.pod_share(machine, mounts_bucket=True, collector=True)
    requests = node_sizing.quantities(share)  # what the fine-tune's (the trial's) Job asks
    node = node_sizing.allocatable(node_sizing.MACHINES[machine]) - node_sizing.SYSTEM_PODS
    sidecars = node_sizing.GCSFUSE_SIDECAR.cpu_m + node_sizing.KATIB_COLLECTOR.cpu_m
    assert node.cpu_m - _millicores(requests["cpu"]) - sidecars >= 250, requests
    sidecars_mib = node_sizing.GCSFUSE_SIDECAR.memory_mib + node_sizing.KATIB_COLLECTOR.memory_mib
    assert node.memory_mib - _mib(requests["memory"]) - sidecars_mib >= 256, requests


def test_allocatable_matches_what_gke_and_the_autoscaler_predict():
    """g2-standard-8 (8 vCPU, 32 GiB): the docs' table gives 29022 MiB (3645 reserved + 100
    eviction, off the full 32 GiB); the cluster autoscaler (cloudprovider/gce/reserved.go, after
    the kernel's share) 28470 MiB; CPU 7910m. The kit's figure may not exceed either."""
    g2 = node_sizing.allocatable(node_sizing.MACHINES["g2-standard-8"])
    assert g2.cpu_m == 7910
    assert 28000 <= g2.memory_mib <= 28470
    # the request the Job had before: 28Gi + the sidecar's 256Mi does not fit
    assert 28 * 1024 + node_sizing.GCSFUSE_SIDECAR.memory_mib > g2.memory_mib - 330  # DaemonSets


def test_an_unknown_or_mismatched_gpu_machine_is_refused(tmp_path):
    base = {"profile": "gke", "project_id": "p1"}
    with pytest.raises(SettingsError, match="gpu_machine_type: one of the GPU machines"):
        tunekit.start_run(tmp_path / "a", **base, gpu_machine_type="n2-standard-8")
    with pytest.raises(SettingsError, match="gpu_type: a2-highgpu-1g carries nvidia-tesla-a100"):
        tunekit.start_run(tmp_path / "b", **base, gpu_machine_type="a2-highgpu-1g")
    with pytest.raises(SettingsError, match="gpu_count: g2-standard-8 has 1 GPU"):
        tunekit.start_run(tmp_path / "c", **base, gpu_count=2)
    assert not any(tmp_path.iterdir())


def _plain(value: Any) -> Any:
    """python-hcl2's output without its quotes around strings and its bookkeeping keys."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _terraform() -> dict[str, Any]:
    """Every block of terraform/*.tf, merged by block type."""
    merged: dict[str, list] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        for kind, blocks in _plain(hcl2.loads(path.read_text())).items():
            merged.setdefault(kind, []).extend(blocks)
    return merged


def _resources(tf: dict[str, Any], kind: str = "resource") -> dict[str, dict[str, Any]]:
    """`type.name` (data sources: `data.type.name`) -> body."""
    prefix = "data." if kind == "data" else ""
    found = {}
    for block in tf.get(kind, []):
        for rtype, named in block.items():
            for name, body in named.items():
                found[f"{prefix}{rtype}.{name}"] = body
    return found


def _variable_default(tf: dict[str, Any], name: str) -> Any:
    for block in tf["variable"]:
        if name in block:
            return block[name].get("default")
    raise KeyError(name)


def _control_plane_ports() -> list[str]:
    """The tcp ports terraform's INGRESS firewall rules open to the control plane's range."""
    tf = _terraform()

    def value(expression: Any) -> Any:  # a variable or local's value, else as written
        if isinstance(expression, str) and (found := re.fullmatch(r"\$\{(var|local)\.(\w+)\}",
                                                                   expression)):  # fmt: skip
            kind, name = found.groups()
            if kind == "var":
                return _variable_default(tf, name)
            return next(b[name] for b in tf["locals"] if name in b)
        return expression

    cluster = _resources(tf)["google_container_cluster.tunekit"]
    master = value(cluster["private_cluster_config"][0]["master_ipv4_cidr_block"])
    assert master == "172.16.0.0/28"
    admitted = []
    for body in _resources(tf).values():
        sources = [value(s) for s in body.get("source_ranges", [])]
        if body.get("direction") == "INGRESS" and master in sources:
            for rule in body.get("allow", []):
                if rule["protocol"] == "tcp":
                    admitted += value(rule.get("ports", []))
    return admitted


def test_the_control_plane_reaches_the_kserve_webhook():
    """Item 4. On a private cluster GKE's own firewall rule lets the control plane reach the
    nodes on tcp:443 and tcp:10250 only (cloud.google.com/kubernetes-engine/docs/how-to/
    private-clusters#add_firewall_rules). KServe's webhook server listens on 9443 (kserve
    cmd/manager/main.go `webhookPort: 9443`, config/manager/manager.yaml
    `containerPort: 9443`); its Service maps 443 to it, but the API server dials the pod.
    cert-manager's webhook listens on 10250 (chart value securePort), which GKE allows."""
    assert "9443" in _control_plane_ports()


def test_the_control_plane_reaches_the_katib_webhook():
    """Katib v0.19.0's webhook server listens on 8443 (manifests/v1beta1/components/
    controller/service.yaml `targetPort: 8443`; pkg/apis/config/v1beta1/defaults.go
    `DefaultWebhookPort = 8443`). Its pod mutator (components/webhook/webhooks.yaml) selects
    the namespace tunekit labels for the collector, with no failurePolicy (the API's default,
    Fail): unreached, it refuses every new pod there, the fine-tune and servers included."""
    from tunekit.backends.gke import katib

    assert str(katib.WEBHOOK_PORT) in _control_plane_ports()


def test_the_gpu_pool_is_placed_in_zones_that_have_its_accelerator(dry_run, tmp_path):
    """A node pool without node_locations takes the cluster's zones (terraform-provider-google
    google_container_node_pool `node_locations`), which GKE picks without looking at GPUs:
    us-central1-f and us-east4-b have no L4 (machine types by zone, skypilot-catalog
    catalogs/v8/gcp/vms.csv), and creating the pool there fails. The kit passes zones known to
    have the accelerator and refuses a pairing it does not know, before terraform runs."""
    pool = _resources(_terraform())["google_container_node_pool.gpu"]
    assert pool["node_locations"] == "${var.gpu_node_locations}"  # never GKE's pick
    [precondition] = pool["lifecycle"][0]["precondition"]
    assert precondition["condition"] == "${length(var.gpu_node_locations) > 0}"
    # a default, so that `terraform destroy` with a tfvars file of an older kit still runs
    # (Terraform checks a resource's preconditions when it plans to create or change it)
    assert _variable_default(_terraform(), "gpu_node_locations") == []
    variables = json.loads((dry_run.dir / "gke" / "terraform.tfvars.json").read_text())
    assert (variables["region"], variables["gpu_type"]) == ("us-central1", "nvidia-l4")
    assert variables["gpu_node_locations"] == ["us-central1-a", "us-central1-b", "us-central1-c"]
    base = {"profile": "gke", "project_id": "p1", "dry_run": True}
    with pytest.raises(SettingsError, match=r"gpu_zones: no zones of me-west1 .*nvidia-l4"):
        tunekit.start_run(tmp_path / "a", **base, region="me-west1")
    with pytest.raises(SettingsError, match=r"not zones of region us-east4"):
        tunekit.start_run(tmp_path / "b", **base, region="us-east4", gpu_zones=["us-east1-b"])
    assert not any(tmp_path.iterdir())  # nothing half-written
    east = tunekit.start_run(tmp_path / "c", **base, region="us-east4")
    assert east.settings.gpu_zones == ["us-east4-a", "us-east4-c"]  # not us-east4-b


def test_the_cluster_has_no_default_service_account_or_public_google_ranges():
    """The temporary default pool runs as the cluster's node_config service account, else as
    the Compute Engine default one (terraform-provider-google google_container_cluster
    `node_config`; hashicorp/terraform-provider-google#17511), and a changed node_config would
    recreate the cluster (#12070). `gcp_public_cidrs_access_enabled` (in
    master_authorized_networks_config, provider >= 4.45) left unset lets Google Cloud's public
    ranges reach the control plane's IP endpoint."""
    cluster = _resources(_terraform())["google_container_cluster.tunekit"]
    [node_config] = cluster["node_config"]
    assert node_config["service_account"] == "${google_service_account.nodes.email}"
    assert "node_config" in str(cluster["lifecycle"][0]["ignore_changes"])
    [networks] = cluster["master_authorized_networks_config"]
    assert networks["gcp_public_cidrs_access_enabled"] is False


def test_the_control_plane_is_not_open_to_the_internet(dry_run):
    """Item 12. The IP endpoint admits `master_authorized_networks`, none by default; kubectl
    goes through the DNS-based endpoint, which IAM authorizes (terraform-provider-google >=
    6.11 `control_plane_endpoints_config.dns_endpoint_config.allow_external_traffic`; gcloud
    `get-credentials --dns-endpoint`)."""
    tf = _terraform()
    networks = _variable_default(tf, "master_authorized_networks")
    assert not [n for n in networks if n["cidr_block"] == "0.0.0.0/0"]
    cluster = _resources(tf)["google_container_cluster.tunekit"]
    dns = cluster["control_plane_endpoints_config"][0]["dns_endpoint_config"][0]
    assert dns["allow_external_traffic"] is True
    provider = next(b["required_providers"][0]["google"] for b in tf["terraform"])
    assert provider["version"] == "~> 6.40"  # has the block (added in 6.11.0)
    commands = (dry_run.dir / "gke" / "commands.sh").read_text()
    assert re.search(r"get-credentials tunekit .*--dns-endpoint", commands)


# Which API each kind of resource calls (the provider's resource implementations; data
# "google_project" and project IAM call Cloud Resource Manager: resource_google_project.go).
API_OF = {
    "google_project_iam_member": "cloudresourcemanager",
    "google_service_account": "iam",
    "google_compute_network": "compute",
    "google_compute_subnetwork": "compute",
    "google_compute_firewall": "compute",
    "google_compute_router": "compute",
    "google_compute_router_nat": "compute",
    "google_container_cluster": "container",
    "google_container_node_pool": "container",
    "google_storage_bucket": "storage",
    "google_storage_bucket_iam_member": "storage",
    "google_artifact_registry_repository": "artifactregistry",
    "google_artifact_registry_repository_iam_member": "artifactregistry",
}
_REFERENCE = re.compile(r"\b((?:data\.)?google_[a-z_]+\.[a-z_]+|local\.[a-z_]+)\b")


def _depends(blocks: dict[str, dict[str, Any]], address: str) -> set[str]:
    """Everything `address` waits for: its depends_on and the resources it references, and
    theirs (Terraform orders a block after all of them)."""
    seen: set[str] = set()
    todo = [address]
    while todo:
        body = blocks[todo.pop()]
        text = repr({k: v for k, v in body.items() if k != "depends_on"})
        direct = set(_REFERENCE.findall(text))
        direct |= {d.strip("${}") for d in body.get("depends_on", [])}
        for found in direct - seen:
            if found in blocks:
                seen.add(found)
                todo.append(found)
    return seen


def test_first_apply_on_a_fresh_project_waits_for_what_it_calls():
    """Item 9. On a new project every API is off: a block that calls one before
    google_project_service enabled it fails with "API has not been used in project ... or it
    is disabled" (the provider's guide google_project_service); a data source is read at plan
    time, before anything is enabled, so none may call an API. And the Workload Identity pool
    `<project>.svc.id.goog` exists only once a cluster with Workload Identity does ("Identity
    Pool does not exist", googleforgames/global-multiplayer-demo#39)."""
    tf = _terraform()
    assert _resources(tf, "data") == {}
    blocks = _resources(tf)
    local_values = {f"local.{k}": {"value": v} for b in tf["locals"] for k, v in b.items()}
    apis = local_values["local.apis"]["value"]
    enabling = "google_project_service.apis"
    resources = list(blocks)
    blocks.update(local_values)
    for address in resources:
        kind = address.rsplit(".", 1)[0]
        if kind == "google_project_service":
            continue
        api = API_OF.get(kind)
        assert api, f"{address}: which API does it call? (add it to API_OF)"
        assert api in apis, f"{address} calls {api}.googleapis.com, which is not enabled"
        assert enabling in _depends(blocks, address), f"{address} may run before the APIs"
    for address in resources:
        if "local.principal" in repr(blocks[address]):
            assert "google_container_cluster.tunekit" in _depends(blocks, address), address


def test_cloud_build_uploads_no_state_and_no_credentials(tmp_path):
    """Item 12. `gcloud builds submit` uploads the folder less .gcloudignore's patterns
    (`gcloud topic gcloudignore`); `gcloud meta list-files-for-upload` lists what it would
    upload. Terraform's state and variables hold the project's secrets and must stay here."""
    gcloud = shutil.which("gcloud")
    if not gcloud:
        pytest.skip("gcloud is not installed (the machine image has it)")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    source = tmp_path / "src"
    for name in tracked.stdout.split():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, target)
    planted = ["terraform/terraform.tfstate", "terraform/terraform.tfstate.backup",
               "terraform/.terraform/providers/x", "my.tfvars", "prod.tfvars.json",
               "runs/r1/secrets.json", "runs/r1/gke/terraform.tfvars.json"]  # fmt: skip
    for name in planted:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("secret\n")
    listed = subprocess.run([gcloud, "meta", "list-files-for-upload", str(source)],
                            capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    uploaded = {str(Path(p).relative_to(source)) if Path(p).is_absolute() else p for p in listed}
    assert not [p for p in uploaded if p in planted or p.startswith(("terraform/", "runs/"))]
    # what the Dockerfiles COPY and Cloud Build reads is still there
    needed = {"cloudbuild.yaml", "pyproject.toml", "README.md", "lib/tunekit/train.py",
              "docker/finetune/Dockerfile", "docker/kserve/requirements.txt"}  # fmt: skip
    assert needed <= uploaded


def test_vllm_finds_the_adapter_where_the_logged_model_keeps_it(dry_run):
    """KServe's storage initializer copies the registered version's MLflow model directory to
    its mountPath (kserve/storage); the kit's pyfunc keeps the adapter in artifacts/peft
    (MLflow's pyfunc puts each artifact under artifacts/<name>: tunekit.pyfunc_model.ADAPTER).
    The structured-output backend is named, xgrammar: under vLLM's "auto", a grammar xgrammar
    cannot parse goes to another backend and the engine dies (vllm-project/vllm#43920);
    vLLM 0.24.0 (KServe v0.21.0's image: python/kserve/pyproject.toml `vllm==0.24.0`) names it
    `--structured-outputs-config`, a JSON StructuredOutputsConfig (vllm/config/
    structured_outputs.py; vllm-project/vllm#22772 removed `--guided-decoding-*`). KServe's
    huggingfaceserver reads its arguments with `parse_known_args` (huggingfaceserver/
    __main__.py): an unknown flag, the old one or the dotted form (expanded only by
    FlexibleArgumentParser.parse_args), is dropped without a word and the backend stays
    "auto"."""
    from tunekit.pyfunc_model import ADAPTER

    from .test_gke_rollout import _vllm_lora_modules

    predictor = rendered_one(dry_run, "InferenceService", "-vllm")["spec"]["predictor"]
    args = predictor["model"]["args"]
    [lora], _ = _vllm_lora_modules(args)
    [storage] = predictor["storageUris"]  # downloaded to its mountPath
    assert lora.endswith(f"={storage['mountPath']}/artifacts/{ADAPTER}")
    [structured] = [a for a in args if a.startswith("--structured-outputs-config")]
    flag, _, value = structured.partition("=")
    assert flag == "--structured-outputs-config" and json.loads(value) == {"backend": "xgrammar"}
    assert not [a for a in args if a.startswith("--guided-decoding")]


# --- the GPU images' CUDA and the nodes' driver (tunekit.gpu_stack)


def test_the_gpu_images_cuda_and_the_nodes_driver_are_a_pair():
    """torch 2.13.0's PyPI wheel is a CUDA 13.0 build (Requires-Dist cuda-toolkit==13.0.3),
    which needs driver >= 580.65.06 (NVIDIA's CUDA 13.0 release notes); GKE's LATEST driver is
    R580 (rapidsai/deployment#659). The images' CUDA base must be that CUDA (it labelled the
    CUDA 13 torch as 12.8.1), and the pool must ask for that driver."""
    from tunekit import gpu_stack

    for name in ("finetune", "kserve"):
        dockerfile = (REPO / "docker" / name / "Dockerfile").read_text()
        args = dict(re.findall(r"^ARG (\w+)=(.*)$", dockerfile, re.M))
        assert args["CUDA_BASE"] == gpu_stack.CUDA_BASE_IMAGE, name
        assert args["TORCH"] == gpu_stack.TORCH, name
        assert args["TORCH_INDEX"] == "https://pypi.org/simple", name  # the CUDA 13.0 wheel
    tag = gpu_stack.CUDA_BASE_IMAGE.split(":")[1]
    assert tag.startswith(f"{gpu_stack.TORCH_CUDA}."), tag
    assert "FROM ${BASE_IMAGE}" in (REPO / "docker" / "serve" / "Dockerfile").read_text()
    pool = _resources(_terraform())["google_container_node_pool.gpu"]
    [accelerator] = pool["node_config"][0]["guest_accelerator"]
    [driver] = accelerator["gpu_driver_installation_config"]
    assert driver["gpu_driver_version"] == gpu_stack.GKE_DRIVER


def test_every_gpu_container_checks_the_driver_at_start(dry_run):
    from tunekit import gpu_stack

    checked, unchecked = set(), set()
    for obj in rendered(dry_run):
        if obj["kind"] in ("Job", "Deployment", "StatefulSet", "ServingRuntime"):
            spec = obj["spec"]
            spec = spec if obj["kind"] == "ServingRuntime" else spec["template"]["spec"]
            for container in spec["containers"]:
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                on = env.get(gpu_stack.REQUIRE_ENV) == gpu_stack.TORCH_CUDA
                (checked if on else unchecked).add(container["name"])
    assert checked == {"train", "serve", "kserve-container"}, checked
    assert "postgres" in unchecked


def test_a_driver_older_than_the_images_cuda_is_refused_naming_both():
    from tunekit.gpu_stack import GpuMismatch, check, driver_version

    check("13.0", 13000, "580.65.06")
    check("13.0", 13020, "580.95.05")
    with pytest.raises(GpuMismatch, match=r"driver 570.133.20 supports CUDA up to 12.8; .*CUDA "
                       r"13.0 .*driver >= 580.65.06 .*LATEST"):  # fmt: skip
        check("13.0", 12080, "570.133.20")
    with pytest.raises(GpuMismatch, match="no NVIDIA driver is visible"):
        check("13.0", None, "unknown")
    assert driver_version(REPO / "no-such-file") == "unknown"


def test_the_fine_tune_stops_at_once_on_a_gpu_pod_without_a_usable_driver(tmp_path):
    """This machine has no NVIDIA driver: what a GPU pod on a node without one (or with one
    too old) sees. The trainer exits before loading anything, naming what it needs."""
    import subprocess
    import sys

    from tunekit import gpu_stack

    env = {**os.environ, gpu_stack.REQUIRE_ENV: gpu_stack.TORCH_CUDA}
    done = subprocess.run([sys.executable, "-m", "tunekit.train", "--output-dir", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0
    assert "no NVIDIA driver is visible" in done.stderr and "580.65.06" in done.stderr
    assert not any(tmp_path.iterdir())
