"""The gke side of a rollout (issue 29), rendered by the dry run and checked against the
sources of the versions the kit installs: the two-adapter vLLM InferenceService, MLServer's
KServe canary, and the servers' autoscaling on their queue.

KServe facts are from kserve/kserve at the commit before v0.21.0 (aaac4e2, whose
python/kserve/pyproject.toml pins vllm==0.24.0, the vLLM of v0.21.0's image) and its SDK 0.21.0
(tests/schemas.py validates every object against it); vLLM facts from the vllm 0.24.0 sdist.
"""

from __future__ import annotations

import argparse
import re
from pathlib import PurePosixPath
from typing import Any

from tunekit.backends.gke import workloads
from tunekit.backends.gke.terraform import terraform_variables
from tunekit.backends.gke.workloads import autoscaling
from tunekit.serving_metrics import SERVED_ALIAS, WAITING
from tunekit.traffic import CHALLENGER

from .conftest import rendered, rendered_one
from .schemas import validate

NAME = "gemma2-text-to-sql"


def test_every_object_of_a_rollout_validates(dry_run_rollout) -> None:
    for obj in rendered(dry_run_rollout):
        validate(obj, workloads.K8S_VERSION)


def _vllm(run: Any) -> dict[str, Any]:
    return rendered_one(run, "InferenceService", "-vllm")


def _vllm_lora_modules(args: list[str]) -> tuple[list[str], int]:
    """`args` read as KServe's huggingfaceserver reads them: `parse_known_args` (unknown
    flags dropped: huggingfaceserver/__main__.py), `--lora-modules` with nargs="+" and an
    action that sets the list it was given (vllm 0.24.0 vllm/engine/arg_utils.py makes a
    list-typed field nargs="+"; vllm/entrypoints/openai/cli_args.py LoRAParserAction ends
    `setattr(namespace, self.dest, lora_list)`: a second flag replaces the first)."""

    class Sets(argparse.Action):
        def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None):
            setattr(namespace, self.dest, list(values))

    parser = argparse.ArgumentParser()
    parser.add_argument("--lora-modules", nargs="+", action=Sets)
    parser.add_argument("--max-loras", type=int, default=1)  # vllm/config/lora.py: default 1
    known, _ = parser.parse_known_args(args)
    return known.lora_modules or [], known.max_loras


def test_vllm_serves_both_adapters_each_from_its_own_folder(dry_run_rollout) -> None:
    """One vLLM, both adapters: each a `storageUris` entry (pkg/apis/serving/v1beta1/
    predictor.go `StorageUri{uri, mountPath}`, on the predictor, not its model), both under one
    parent as the webhook requires for two or more (inference_service_validation.go: "must
    share a common parent"; not `/`), no `storageUri` beside them ("Setting both StorageURI
    and StorageURIs is not supported"). The storage initializer downloads each URI into its
    mountPath (storage-initializer/scripts/initializer-entrypoint)."""
    from tunekit.pyfunc_model import ADAPTER

    predictor = _vllm(dry_run_rollout)["spec"]["predictor"]
    assert "storageUri" not in predictor["model"] and "storageUri" not in predictor
    storage = predictor["storageUris"]
    mounts = [PurePosixPath(s["mountPath"]) for s in storage]
    assert len(storage) == 2 and len(set(mounts)) == 2
    assert all(m.is_absolute() and ".." not in m.parts for m in mounts)
    assert {m.parent for m in mounts} == {PurePosixPath(workloads.MODEL_DIR)} != {"/"}
    registry = dry_run_rollout.state.section("registry")
    assert storage[0]["uri"] == dry_run_rollout.state.section("serving")["mlserver"]["storage_uri"]
    assert storage[1]["uri"].endswith(f"-v{registry['challenger_version']}")

    modules, max_loras = _vllm_lora_modules(predictor["model"]["args"])
    named = dict(m.split("=", 1) for m in modules)  # cli_args.py: name=path, split on "="
    assert set(named) == {f"{NAME}-lora", f"{NAME}-challenger"}
    for (name, path), mount in zip(named.items(), mounts, strict=True):
        assert PurePosixPath(path) == mount / "artifacts" / ADAPTER, name
    assert max_loras == 2  # both adapters in one batch (scheduler.py holds back a third)
    served = dry_run_rollout.state.section("serving")["vllm"]
    assert (served["model"], served["challenger_model"]) == (f"{NAME}-lora", f"{NAME}-challenger")


def test_a_second_lora_modules_flag_would_replace_the_first() -> None:
    """Why the args give the flag once: the parsing the test above relies on, shown."""
    modules, _ = _vllm_lora_modules(["--lora-modules=a=/x", "--lora-modules=b=/y"])
    assert modules == ["b=/y"]


def test_without_a_challenger_vllm_serves_the_champion_alone(dry_run) -> None:
    predictor = _vllm(dry_run)["spec"]["predictor"]
    modules, max_loras = _vllm_lora_modules(predictor["model"]["args"])
    assert [m.split("=")[0] for m in modules] == [f"{NAME}-lora"] and max_loras == 1
    assert [s["mountPath"] for s in predictor["storageUris"]] == [f"{workloads.MODEL_DIR}/champion"]


def test_mlserver_gets_the_challenger_as_kserves_canary(dry_run_rollout) -> None:
    """`spec.canary` (pkg/apis/serving/v1beta1/inference_service.go `CanarySpec{predictor,
    trafficPercent}`), as the webhook admits it (inference_service_validation.go
    `validateCanarySpecs`): Standard mode; the stable predictor has a storageUri; the canary's
    predictor.name is required, a DNS label (predictor.go pattern), not the stable one's;
    trafficPercent 0-100; its model has modelFormat; no autoscaling fields ("canary uses fixed
    replicas")."""
    isvc = rendered_one(dry_run_rollout, "InferenceService", NAME)
    assert isvc["metadata"]["name"] == NAME
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    stable = isvc["spec"]["predictor"]
    assert stable["model"]["storageUri"]
    [canary] = isvc["spec"]["canary"]
    predictor = canary["predictor"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", predictor["name"])
    assert predictor["name"] != stable.get("name")
    assert canary["trafficPercent"] == round(100 * dry_run_rollout.settings.challenger_share) == 10
    assert predictor["model"]["modelFormat"] == stable["model"]["modelFormat"]
    for field in ("maxReplicas", "scaleTarget", "scaleMetric", "autoScaling", "workerSpec"):
        assert field not in predictor
    registry = dry_run_rollout.state.section("registry")
    assert predictor["model"]["storageUri"].endswith(f"-v{registry['challenger_version']}")
    # its version, over the runtime's env by name (utils.go MergeRuntimeContainers: a
    # strategic merge patch of the runtime's container with the predictor's)
    env = {e["name"]: e["value"] for e in predictor["model"]["env"]}
    assert env == {
        "TUNEKIT_SERVED_VERSION": str(registry["challenger_version"]),
        SERVED_ALIAS: CHALLENGER,
    }  # its /tunekit/metrics: adapter="challenger"
    recorded = dry_run_rollout.state.section("serving")["mlserver"]["canary"]
    # its Deployment and Service: {isvc}-{predictor.name}-predictor (constants.go
    # PredictorServiceName)
    assert f"{NAME}-{predictor['name']}-predictor." in recorded["in_cluster_url"]


def test_no_canary_without_a_challenger(dry_run) -> None:
    assert "canary" not in rendered_one(dry_run, "InferenceService", NAME)["spec"]


def _scaled(run: Any) -> dict[str, tuple[dict, dict]]:
    """Each HPA's target name -> (the HPA, the PodMonitoring of the same name)."""
    objects = rendered(run)
    monitors = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PodMonitoring"}
    return {
        o["spec"]["scaleTargetRef"]["name"]: (o, monitors[o["metadata"]["name"]])
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
    }


def test_both_servers_scale_on_their_queue(dry_run_rollout) -> None:
    """An HPA on the requests waiting per pod, read through the Custom Metrics Stackdriver
    Adapter under Managed Prometheus's name for the gauge both servers export
    (prometheus.googleapis.com|<name>|gauge: kubernetes-engine-samples ai-ml/
    llm-multihost-gpus/vllm-hpa.yaml), and a PodMonitoring that scrapes the pods it scales."""
    scaled = _scaled(dry_run_rollout)
    vllm = f"{NAME}-vllm-predictor"  # {isvc}-predictor: constants.go PredictorServiceName
    assert set(scaled) == {"tunekit-serve", vllm}
    for target, (hpa, monitor) in scaled.items():
        [metric] = hpa["spec"]["metrics"]
        assert metric["type"] == "Pods" and metric["pods"]["target"]["type"] == "AverageValue"
        assert metric["pods"]["metric"]["name"] == f"prometheus.googleapis.com|{WAITING}|gauge"
        assert hpa["spec"]["maxReplicas"] == dry_run_rollout.settings.serve_max_replicas
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment", target
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"

    # the FastAPI Deployment: the monitor selects its pods, by the port's name; no replica
    # count of its own, which each apply would reset under the HPA
    deployment = rendered_one(dry_run_rollout, "Deployment", "tunekit-serve")
    pod = deployment["spec"]["template"]
    _, monitor = scaled["tunekit-serve"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
    assert monitor["spec"]["endpoints"][0]["port"] in ports
    assert "replicas" not in deployment["spec"]

    # vLLM's predictor: the labels KServe gives its pods (components/predictor.go
    # buildObjectMeta), KServe's server's port (config/runtimes/kserve-huggingfaceserver.yaml
    # containerPort 8080; /metrics there: python/kserve/kserve/protocol/rest/server.py), and
    # no HPA of KServe's beside ours: class external makes none (reconcilers/hpa/
    # hpa_reconciler.go shouldCreateHPA; the accepted classes: constants.go hpa, external,
    # keda, none), where KServe's own would drop a Pods metric (it reads Resource ones only)
    _, monitor = scaled[vllm]
    labels = {"serving.kserve.io/inferenceservice": f"{NAME}-vllm", "component": "predictor"}
    assert monitor["spec"]["selector"]["matchLabels"] == labels
    assert monitor["spec"]["endpoints"][0]["port"] == 8080
    isvc = _vllm(dry_run_rollout)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"


def test_the_metrics_adapter_is_installed_and_may_read_cloud_monitoring(dry_run_rollout) -> None:
    """The adapter's manifest at a pinned commit, and terraform's grant to the service account
    that manifest creates (k8s-stackdriver custom-metrics-stackdriver-adapter/deploy/
    production/adapter_new_resource_model.yaml: Namespace custom-metrics, ServiceAccount
    custom-metrics-stackdriver-adapter; it needs roles/monitoring.viewer: its README)."""
    from .test_gke_upstream import _resources, _terraform

    commands = (dry_run_rollout.dir / "gke" / "commands.sh").read_text()
    assert f"kubectl apply -f {autoscaling.ADAPTER_MANIFEST}" in commands
    assert re.search(r"/k8s-stackdriver/[0-9a-f]{40}/", autoscaling.ADAPTER_MANIFEST)
    grant = _resources(_terraform())["google_project_iam_member.metrics_adapter"]
    assert grant["role"] == "roles/monitoring.viewer"
    subject = f"/subject/ns/{autoscaling.ADAPTER_NAMESPACE}/sa/{autoscaling.ADAPTER_SA}"
    assert grant["member"].endswith(subject)
    cluster = _resources(_terraform())["google_container_cluster.tunekit"]
    assert cluster["monitoring_config"][0]["managed_prometheus"][0]["enabled"] is True


def test_the_gpu_pool_holds_every_server_pod_at_its_most(dry_run_rollout) -> None:
    """FastAPI and vLLM at their HPAs' maximum, MLServer and its canary: a GPU node each."""
    s = dry_run_rollout.settings
    pods = 2 * s.serve_max_replicas + 2
    assert terraform_variables(dry_run_rollout)["gpu_max_nodes"] >= pods


def test_a_rollouts_serving_record_is_what_the_records_declare(dry_run_rollout) -> None:
    from .test_records import check

    serving = dry_run_rollout.state.section("serving")
    assert serving["mlserver"]["canary"]["traffic_percent"] == 10
    assert check(dry_run_rollout.state) == []
