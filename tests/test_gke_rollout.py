"""The gke side of a rollout (issue 29), rendered by the dry run and checked against the
sources of the versions the kit installs: the two-adapter vLLM InferenceService, MLServer's
KServe canary, and the servers' autoscaling on their queue.

KServe facts are from kserve/kserve at the commit before v0.21.0 (aaac4e2, whose
python/kserve/pyproject.toml pins vllm==0.24.0, the vLLM of v0.21.0's image) and its SDK 0.21.0
(tests/schemas.py validates every object against it); vLLM facts from the vllm 0.24.0 sdist.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import re
from pathlib import PurePosixPath
from typing import Any

from tunekit.backends.gke import kserve_apply, workloads
from tunekit.backends.gke.plan import EmptyCluster
from tunekit.backends.gke.shell import Shell
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


# --- MLServer's Gateway: the canary's weights (workloads/gateway.py)


def _mlserver_route(run: Any) -> dict[str, Any]:
    return rendered_one(run, "HTTPRoute", NAME)


def test_mlservers_gateway_weighs_the_canary_as_kserve_would(dry_run_rollout) -> None:
    """KServe's own route would weigh the stable predictor's Service at 100 - trafficPercent
    and the canary's at trafficPercent (reconcilers/ingress/httproute_reconciler.go
    `applyCanaryWeights`), but matches paths by regular expression, which GKE's Gateway
    refuses (kserve/kserve#5319): the kit's route, on a path prefix, weighs the same Services
    (`{isvc}-predictor`, `{isvc}-{name}-predictor`: constants.go PredictorServiceName) on
    their port, 80 (constants.go CommonDefaultHttpPort; service_reconciler.go
    createDefaultSvc). A weight is a share of the weights' sum (gateway-api v1.6.1
    httproutes CRD, `weight`)."""
    isvc = rendered_one(dry_run_rollout, "InferenceService", NAME)
    [canary] = isvc["spec"]["canary"]
    gateway = rendered_one(dry_run_rollout, "Gateway")
    route = _mlserver_route(dry_run_rollout)
    assert gateway["spec"]["gatewayClassName"] == "gke-l7-rilb"  # internal, regional
    [listener] = gateway["spec"]["listeners"]
    assert (listener["protocol"], listener["port"]) == ("HTTP", 80)
    [parent] = route["spec"]["parentRefs"]
    assert (parent["name"], parent["sectionName"]) == (
        gateway["metadata"]["name"],
        listener["name"],
    )
    assert (
        parent.get("namespace", route["metadata"]["namespace"]) == gateway["metadata"]["namespace"]
    )
    [rule] = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    backends = {b["name"]: b for b in rule["backendRefs"]}
    stable, challenger = f"{NAME}-predictor", f"{NAME}-{canary['predictor']['name']}-predictor"
    assert set(backends) == {stable, challenger}
    assert {b["port"] for b in backends.values()} == {80}
    total = sum(b["weight"] for b in backends.values())
    assert backends[challenger]["weight"] / total == canary["trafficPercent"] / 100
    assert backends[challenger]["weight"] / total == dry_run_rollout.settings.challenger_share
    served = dry_run_rollout.state.section("serving")["mlserver"]
    assert served["gateway_infer_url"].endswith(f"/v2/models/{NAME}/infer")


def test_without_a_challenger_the_gateway_sends_everything_to_the_champion(dry_run) -> None:
    [rule] = _mlserver_route(dry_run)["spec"]["rules"]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [(f"{NAME}-predictor", 100)]


def test_the_load_balancer_checks_mlservers_readiness_on_each_service(dry_run_rollout) -> None:
    """A Gateway's backend is checked with `GET /` unless a HealthCheckPolicy says otherwise
    (gke-gateway-api healthcheck_types.go: requestPath default "/"), where MLServer answers
    404: each Service the route names gets the runtime's own readiness path, on the port it
    serves (USE_SERVING_PORT, with no `port`: the CRD refuses one beside it since 983ac3d)."""
    [rule] = _mlserver_route(dry_run_rollout)["spec"]["rules"]
    runtime = rendered_one(dry_run_rollout, "ServingRuntime", "tunekit-mlserver")
    [container] = runtime["spec"]["containers"]
    policies = {
        p["spec"]["targetRef"]["name"]: p
        for p in rendered(dry_run_rollout)
        if p["kind"] == "HealthCheckPolicy"
    }
    assert set(policies) == {b["name"] for b in rule["backendRefs"]}
    for policy in policies.values():
        assert policy["spec"]["targetRef"] | {"name": ""} == {
            "group": "",
            "kind": "Service",
            "name": "",
        }
        config = policy["spec"]["default"]["config"]
        assert config["type"] == "HTTP"
        check = config["httpHealthCheck"]
        assert check["requestPath"] == container["readinessProbe"]["httpGet"]["path"]
        assert check["portSpecification"] == "USE_SERVING_PORT" and "port" not in check


def _admits(policies: list[dict], pod: dict[str, str], source: str, port: int) -> bool:
    """Whether Kubernetes NetworkPolicies admit a connection from `source`, an address outside
    the cluster's pods, to `port` of a pod labelled `pod` (networking.k8s.io/v1 semantics: a pod
    no policy selects for Ingress admits everything; a selected pod, what some rule admits;
    ipBlock peers match by address; pod and namespace selectors match pods only)."""

    def selects(policy: dict) -> bool:
        wanted = policy["spec"]["podSelector"].get("matchLabels", {})
        ingress = "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
        return ingress and all(pod.get(k) == v for k, v in wanted.items())

    def peer(rule_peer: dict) -> bool:
        block = rule_peer.get("ipBlock")
        if not block:
            return False
        address = ipaddress.ip_address(source)
        inside = address in ipaddress.ip_network(block["cidr"])
        return inside and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", [])
        )

    selecting = [p for p in policies if selects(p)]
    if not selecting:
        return True
    return any(
        (not rule.get("from") or any(peer(f) for f in rule["from"]))
        and (not rule.get("ports") or any(p["port"] == port for p in rule["ports"]))
        for policy in selecting
        for rule in policy["spec"].get("ingress", [])
    )


def test_the_load_balancer_gets_through_the_namespaces_network_policy(dry_run_rollout) -> None:
    """The namespace admits its own pods only (Dataplane V2 enforces it); the Gateway's proxies
    (the proxy-only subnet) and Google's health checks (35.191.0.0/16, 130.211.0.0/22:
    load-balancing docs, firewall rules) reach the champion's and the canary's pods on the port
    they serve, the Services' targetPort (the route's NEGs send to the pod). KServe labels a
    canary's pods as the stable ones (components/predictor.go reconcileCanaryDeployments builds
    them from a copy of the InferenceService: same name, component predictor)."""
    policies = [o for o in rendered(dry_run_rollout) if o["kind"] == "NetworkPolicy"]
    assert policies, "no NetworkPolicy rendered"
    predictor = {
        workloads.serving.ISVC_POD_LABEL: NAME,
        workloads.serving.COMPONENT_LABEL: "predictor",
    }
    port = workloads.SERVE_PORT
    runtime = rendered_one(dry_run_rollout, "ServingRuntime", "tunekit-mlserver")
    assert runtime["spec"]["containers"][0]["ports"][0]["containerPort"] == port
    proxy = str(next(ipaddress.ip_network(workloads.PROXY_ONLY_CIDR).hosts()))
    for source in (proxy, "35.191.8.9", "130.211.1.2"):
        assert _admits(policies, predictor, source, port), source
    assert not _admits(policies, predictor, proxy, 9000)  # gRPC is not the Gateway's
    assert not _admits(policies, predictor, "10.99.0.1", port)  # nor anyone else's
    other = {"app.kubernetes.io/name": "tunekit-serve"}  # the policy admits MLServer's pods only
    assert not _admits(policies, other, proxy, port)


def test_the_route_reaches_a_canary_once_it_serves(dry_run, dry_run_rollout) -> None:
    """During a rollout the route is applied once the canary's Deployment has rolled out
    (KServe's CanaryPredictorReady says as much, but a condition wait cannot be trusted after a
    re-apply: see above); on the champion alone, before the InferenceService."""

    def order(run: Any, *lines: str) -> list[int]:
        script = (run.dir / "gke" / "commands.sh").read_text()
        found = [script.find(line) for line in lines]
        assert -1 not in found, [line for line, at in zip(lines, found, strict=True) if at < 0]
        return found

    gateway, kserve = "manifests/06-gateway.yaml", "manifests/06-kserve.yaml"
    canary = f"kubectl rollout status deployment/{NAME}-challenger-predictor -n=tunekit"
    programmed = "kubectl wait gateway/tunekit-serving -n=tunekit --for=condition=Programmed"
    found = order(dry_run_rollout, kserve, canary, gateway, programmed)
    assert found == sorted(found)
    found = order(dry_run, gateway, kserve, programmed)
    assert found == sorted(found)


def test_terraform_gives_the_gateway_its_proxies(dry_run_rollout) -> None:
    """GKE's Gateway API (provider google_container_cluster `gateway_api_config.channel`:
    CHANNEL_DISABLED, CHANNEL_EXPERIMENTAL or CHANNEL_STANDARD: resource_container_cluster.go),
    a proxy-only subnet in the cluster's network and region (`purpose` REGIONAL_MANAGED_PROXY,
    `role` ACTIVE; no log_config: resource_compute_subnetwork.go), at least 64 addresses
    (load-balancing docs, proxy-only subnets), apart from the cluster's ranges, and admitted by
    the firewall with the health checks. The range is the kit's (the NetworkPolicy names it)."""
    from .test_gke_upstream import _resources, _terraform, _variable_default

    tf = _terraform()
    resources = _resources(tf)
    cluster = resources["google_container_cluster.tunekit"]
    assert cluster["gateway_api_config"][0]["channel"] == "CHANNEL_STANDARD"
    proxies = resources["google_compute_subnetwork.proxy_only"]
    assert (proxies["purpose"], proxies["role"]) == ("REGIONAL_MANAGED_PROXY", "ACTIVE")
    assert proxies["network"] == cluster["network"] == "${google_compute_network.tunekit.id}"
    assert proxies["region"] == "${var.region}" and "log_config" not in proxies
    assert proxies["ip_cidr_range"] == "${var.proxy_only_cidr}"
    assert _variable_default(tf, "proxy_only_cidr") == workloads.PROXY_ONLY_CIDR
    assert terraform_variables(dry_run_rollout)["proxy_only_cidr"] == workloads.PROXY_ONLY_CIDR
    proxy_range = ipaddress.ip_network(workloads.PROXY_ONLY_CIDR)
    assert proxy_range.num_addresses >= 64
    subnet = resources["google_compute_subnetwork.tunekit"]
    cluster_ranges = [
        subnet["ip_cidr_range"],
        *(r["ip_cidr_range"] for r in subnet["secondary_ip_range"]),
    ]
    assert not any(proxy_range.overlaps(ipaddress.ip_network(r)) for r in cluster_ranges)
    sources = resources["google_compute_firewall.internal"]["source_ranges"]
    assert "${var.proxy_only_cidr}" in sources
    assert set(workloads.HEALTH_CHECK_RANGES) <= set(sources)


# --- stage 06's applies and waits (kserve_apply.py)


def test_a_reapplied_inferenceservice_is_waited_on_through_its_deployments(dry_run_rollout) -> None:
    """`kubectl wait --for=condition=Ready` on an InferenceService never returns after a
    re-apply that leaves its Deployment alone, as adding the canary does: kubectl holds out
    while status.observedGeneration < metadata.generation (pkg/cmd/wait/condition.go
    checkCondition, getObservedGeneration), and KServe's status.observedGeneration is the
    Deployment's (inference_service_status.go PropagateRawStatus), which stays 1 while the
    InferenceService goes to 2. The stage waits on each predictor's Deployment: that it exists,
    that it was made from this apply's storage URI (KServe's storage-initializer-sourceuri
    annotation: constants.go, components/predictor.go addStorageInitializerAnnotations), that
    it has rolled out."""
    script = (dry_run_rollout.dir / "gke" / "commands.sh").read_text()
    stage_06 = script[script.index("# --- 06-deploy-kserve") :]
    assert not re.search(r"kubectl wait inferenceservice/\S+ .*--for=condition=", stage_06)
    isvc = rendered_one(dry_run_rollout, "InferenceService", NAME)
    [canary] = isvc["spec"]["canary"]
    expected = {
        f"{NAME}-predictor": isvc["spec"]["predictor"]["model"]["storageUri"],
        f"{NAME}-{canary['predictor']['name']}-predictor": canary["predictor"]["model"][
            "storageUri"
        ],
        f"{NAME}-vllm-predictor": "",  # storageUris: not annotated
    }
    route_applied = stage_06.index("manifests/06-gateway.yaml")
    for deployment, uri in expected.items():
        created = stage_06.index(f"kubectl wait --for=create deployment/{deployment} -n=tunekit")
        rolled = stage_06.index(f"kubectl rollout status deployment/{deployment} -n=tunekit")
        assert created < rolled < route_applied, deployment
        source = re.search(
            rf"kubectl wait deployment/{deployment} .*storage-initializer-sourceuri\}}=(\S+?)['\s]",
            stage_06,
        )
        assert (source.group(1) if source else "") == uri, deployment
        if uri:
            assert created < source.start() < rolled


class _LiveCluster(EmptyCluster):
    """A FAKE Kubernetes API (no cluster here) that holds one live InferenceService and
    records what is applied, in order."""

    def __init__(self, live: dict[str, Any]):
        self.live, self.applied = live, []

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None):
        return self.live if kind == "InferenceService" and name == NAME else None

    def apply(self, obj: dict[str, Any]) -> None:
        self.applied.append(copy.deepcopy(obj))


def _end_a_rollout(tmp_path: Any, live_canary_uri: str) -> tuple[list[tuple], str]:
    """Stage 06 on the champion alone (gs://b/champion) over a live InferenceService whose
    canary serves `live_canary_uri`: each route's weights and each InferenceService's
    (stable URI, canary URI) in the order applied, and the recorded commands."""
    import tunekit

    run = tunekit.start_run(tmp_path / "run", profile="gke", dry_run=True, project_id="p1")
    runtime = workloads.mlserver_runtime(run, "http://mlflow", "3")
    isvc = workloads.mlserver_inference_service(run, "gs://b/champion")
    live = copy.deepcopy(isvc)
    canary = {"name": workloads.CANARY, "model": {"storageUri": live_canary_uri}}
    live["spec"]["canary"] = [{"predictor": canary, "trafficPercent": 10}]
    cluster = _LiveCluster(live)
    sh = Shell(run, "06-deploy-kserve", record_only=True, kube=cluster)
    kserve_apply.apply_kserve(sh, run, [runtime, isvc], [isvc], challenger="")
    steps = []
    for obj in cluster.applied:
        if obj["kind"] == "HTTPRoute":
            [rule] = obj["spec"]["rules"]
            steps.append(("route", {b["name"]: b["weight"] for b in rule["backendRefs"]}))
        elif obj["kind"] == "InferenceService":
            canaries = [
                c["predictor"]["model"]["storageUri"] for c in obj["spec"].get("canary", [])
            ]
            steps.append(("isvc", obj["spec"]["predictor"]["model"]["storageUri"], canaries))
    return steps, sh.script.read_text()


STABLE, CANARY_SERVICE = f"{NAME}-predictor", f"{NAME}-challenger-predictor"


def test_a_rollback_takes_the_route_off_the_canary_before_the_canary_goes(tmp_path) -> None:
    """KServe deletes a canary's Deployment and Service at its next reconcile once spec.canary
    is gone (components/predictor.go reconcileCanaryDeployments, its orphan cleanup), while the
    load balancer takes a changed route later: the route leaves first, and the stage gives the
    load balancer time before the canary goes."""
    steps, script = _end_a_rollout(tmp_path, "gs://b/challenger")
    assert steps == [("route", {STABLE: 100}), ("isvc", "gs://b/champion", [])]
    route, isvc = script.index("06-gateway.yaml"), script.index("06-kserve.yaml")
    assert route < script.index(f"sleep {kserve_apply.SETTLE_S}") < isvc


def test_a_promotion_serves_from_the_canary_while_the_champion_is_replaced(tmp_path) -> None:
    """The canary already serves the new champion; the champion's Deployment is replaced
    (Recreate: its pod goes before the new one loads). So the route sends everything to the
    canary first, the stable predictor is updated beside the canary (kept), waited for until it
    serves the new version, the route comes back to it, and only then the canary goes: at no
    step does the route send a request to a predictor that is being replaced or deleted."""
    steps, script = _end_a_rollout(tmp_path, "gs://b/champion")
    assert steps == [
        ("route", {STABLE: 0, CANARY_SERVICE: 100}),
        ("isvc", "gs://b/champion", ["gs://b/champion"]),  # the stable updated, the canary kept
        ("route", {STABLE: 100}),
        ("isvc", "gs://b/champion", []),
    ]
    sleep = f"sleep {kserve_apply.SETTLE_S}"
    first_sleep = script.index(sleep)
    updated = script.index(f"kubectl rollout status deployment/{STABLE}")
    back = script.index("06-gateway.yaml", updated)
    last_sleep = script.index(sleep, back)
    assert first_sleep < script.index("06-kserve.yaml") < updated < back < last_sleep
    assert last_sleep < script.index("06-kserve.yaml", back)


def test_a_request_through_the_gateway_may_take_as_long_as_the_servers_allow(
    dry_run_rollout,
) -> None:
    """The load balancer's default timeout is 30 s (gcpbackendpolicy_types.go `timeoutSec`: "If
    the field is omitted, a default value (30s) will be used"): each Service the route names
    gets a GCPBackendPolicy with the kit's request timeout, and as long to drain a pod that
    goes (a deleted canary) as a request may take."""
    [rule] = _mlserver_route(dry_run_rollout)["spec"]["rules"]
    policies = {
        p["spec"]["targetRef"]["name"]: p["spec"]["default"]
        for p in rendered(dry_run_rollout)
        if p["kind"] == "GCPBackendPolicy"
    }
    assert set(policies) == {b["name"] for b in rule["backendRefs"]}
    for policy in policies.values():
        assert policy["timeoutSec"] > 30
        assert policy["connectionDraining"]["drainingTimeoutSec"] >= policy["timeoutSec"]


def test_kubectl_reads_the_waits_as_the_stage_means_them(tmp_path) -> None:
    """The waits, run by the real kubectl against a FAKE API server (tests/kube_fake.py; no
    cluster here): a condition wait on an object whose status.observedGeneration is behind its
    generation, as KServe leaves an InferenceService after a canary is added, never returns;
    the storage-URI wait reads KServe's annotation (its dots escaped) and returns only for the
    URI of this apply."""
    import os
    import shutil
    import subprocess

    import pytest

    from .kube_fake import FakeKubeAPI

    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed")
    with FakeKubeAPI() as api:
        env = {**os.environ, "KUBECONFIG": str(api.kubeconfig(tmp_path))}

        def kubectl(*args: str) -> int:
            argv = ["kubectl", *args, "-n=tunekit", "--timeout=3s"]
            return subprocess.run(argv, env=env, capture_output=True, text=True).returncode

        ready = {"type": "Ready", "status": "True"}
        api.put({"apiVersion": "apps/v1", "kind": "Deployment",
                 "metadata": {"name": "behind", "namespace": "tunekit", "generation": 2},
                 "status": {"observedGeneration": 1, "conditions": [ready]}})  # fmt: skip
        api.put({"apiVersion": "apps/v1", "kind": "Deployment",
                 "metadata": {"name": "caught-up", "namespace": "tunekit", "generation": 2},
                 "status": {"observedGeneration": 2, "conditions": [ready]}})  # fmt: skip
        assert kubectl("wait", "deployment/caught-up", "--for=condition=Ready") == 0
        assert kubectl("wait", "deployment/behind", "--for=condition=Ready") != 0
        source = "internal.serving.kserve.io/storage-initializer-sourceuri"
        api.put({"apiVersion": "apps/v1", "kind": "Deployment",
                 "metadata": {"name": f"{NAME}-predictor", "namespace": "tunekit",
                              "annotations": {source: "gs://b/m-v3"}}})  # fmt: skip
        deployment = f"deployment/{NAME}-predictor"
        for uri, met in (("gs://b/m-v3", True), ("gs://b/m-v2", False)):
            returned = kubectl(
                "wait", deployment, f"--for=jsonpath={kserve_apply.SOURCE_URI}={uri}"
            )
            assert (returned == 0) is met, uri
