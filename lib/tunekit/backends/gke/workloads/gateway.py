"""MLServer at one address: an internal Gateway of GKE's (a regional internal Application Load
Balancer, GatewayClass `gke-l7-rilb`) and an HTTPRoute that weighs the champion's predictor
Service against the challenger's, KServe's canary, by `challenger_share`.

KServe weighs a canary only on the HTTPRoute it writes itself (pkg/controller/v1beta1/
inferenceservice/reconcilers/ingress/httproute_reconciler.go `applyCanaryWeights`, with
`enableGatewayApi`), whose path match is a regular expression (`^/.*$`) that GKE's Gateway
controller refuses (kserve/kserve#5319), so the InferenceService would never be Ready. The kit
writes the route instead, with a path prefix, as `applyCanaryWeights` would weigh it.

Facts: Gateway API v1 (kubernetes-sigs/gateway-api v1.6.1 config/crd/standard/
gateway.networking.k8s.io_{gateways,httproutes}.yaml: GKE installs v1.1.0 to v1.5.0 by
version, the fields used here are the same in each); HealthCheckPolicy from
GoogleCloudPlatform/gke-gateway-api apis/networking/v1/healthcheck_types.go (fc40d60).
"""

from __future__ import annotations

from typing import Any

from tunekit.backends.gke.workloads.pods import SERVE_PORT, meta
from tunekit.run import Run

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_CLASS = "gke-l7-rilb"  # GKE's regional internal Application Load Balancer
GATEWAY, LISTENER = "tunekit-serving", "http"
# The internal load balancer's proxies live in a proxy-only subnet of the region (purpose
# REGIONAL_MANAGED_PROXY, role ACTIVE; at least 64 addresses: cloud.google.com/load-balancing/
# docs/proxy-only-subnets); terraform makes it from this range (variable proxy_only_cidr)
PROXY_ONLY_CIDR = "10.40.0.0/23"
# Where Google's health checks come from (cloud.google.com/load-balancing/docs/firewall-rules)
HEALTH_CHECK_RANGES = ("35.191.0.0/16", "130.211.0.0/22")
# An InferenceService predictor's Service port: 80, to the container's first port (pkg/
# constants/constants.go CommonDefaultHttpPort; reconcilers/service/service_reconciler.go
# createDefaultSvc)
PREDICTOR_PORT = 80
READY_PATH = "/v2/health/ready"  # MLServer: every model loaded (its readinessProbe too)
# A V2 request of many rows may take longer than the load balancer's default of 30 s
# (gke-gateway-api apis/networking/v1/gcpbackendpolicy_types.go `timeoutSec`); requests in
# flight on an endpoint that goes (a canary deleted) get as long to finish (connection draining,
# off by default)
REQUEST_TIMEOUT_S = 120


def predictor_service(isvc: str, predictor: str = "") -> str:
    """The Service of an InferenceService's predictor, `{isvc}-predictor`, or a named one's (a
    canary's) `{isvc}-{name}-predictor` (constants.go `PredictorServiceName`)."""
    return f"{isvc}-{predictor}-predictor" if predictor else f"{isvc}-predictor"


def weights(isvc: str, canary: str = "", to_canary: int = 0) -> dict[str, int]:
    """Each predictor Service's weight, out of 100: the champion's alone, or with a `canary`
    predictor 100 - `to_canary` and `to_canary` (KServe's `applyCanaryWeights` splits so)."""
    if not canary:
        return {predictor_service(isvc): 100}
    return {predictor_service(isvc): 100 - to_canary, predictor_service(isvc, canary): to_canary}


def canary_percent(run: Run) -> int:
    """The canary's share of the requests, in percent (its `trafficPercent`)."""
    return round(100 * run.settings.challenger_share)


def gateway_objects(
    run: Run, isvc: str, pod_labels: dict[str, str], backends: dict[str, int]
) -> list[dict[str, Any]]:
    """The Gateway, a HealthCheckPolicy and a GCPBackendPolicy per Service (before the route, so
    that no backend is first made with the defaults), the HTTPRoute to the Services by weight, and a
    NetworkPolicy that lets the load balancer reach the pods."""
    return [
        gateway(run),
        *(health_check_policy(run, service) for service in backends),
        *(backend_policy(run, service) for service in backends),
        route(run, isvc, backends),
        load_balancer_ingress(run, isvc, pod_labels),
    ]


def gateway(run: Run) -> dict[str, Any]:
    """One HTTP listener; routes of the kit's namespace only (`allowedRoutes` `Same`)."""
    return {
        "apiVersion": f"{GATEWAY_GROUP}/v1",
        "kind": "Gateway",
        "metadata": meta(run, GATEWAY, "serving"),
        "spec": {
            "gatewayClassName": GATEWAY_CLASS,
            "listeners": [
                {
                    "name": LISTENER,
                    "protocol": "HTTP",
                    "port": 80,
                    "allowedRoutes": {"namespaces": {"from": "Same"}},
                }
            ],
        },
    }


def route(run: Run, name: str, backends: dict[str, int]) -> dict[str, Any]:
    """`{name}-weighted` (KServe's own routes, were they on, take `{name}`): every path (a
    prefix match: GKE has no regular expressions) to `backends`, each Service with its weight
    (a share of their sum)."""
    return {
        "apiVersion": f"{GATEWAY_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": meta(run, f"{name}-weighted", "serving"),
        "spec": {
            "parentRefs": [{"name": GATEWAY, "sectionName": LISTENER}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"name": service, "port": PREDICTOR_PORT, "weight": weight}
                        for service, weight in backends.items()
                    ],
                }
            ],
        },
    }


def service_policy(run: Run, kind: str, service: str, default: dict[str, Any]) -> dict[str, Any]:
    """A GKE policy (networking.gke.io/v1) of `service`, in its namespace: `default` holds its
    settings (a single-cluster Gateway's policy targets a Service: gke-gateway-api
    apis/networking/v1 `targetRef`)."""
    return {
        "apiVersion": "networking.gke.io/v1",
        "kind": kind,
        "metadata": meta(run, service, "serving"),
        "spec": {
            "default": default,
            "targetRef": {"group": "", "kind": "Service", "name": service},
        },
    }


def health_check_policy(run: Run, service: str) -> dict[str, Any]:
    """The load balancer's health check of `service`'s pods: MLServer's readiness, on the port
    it serves (the default check is `GET /`, where MLServer answers 404). No `port` beside
    `USE_SERVING_PORT`: the CRD refuses it (gke-gateway-api 983ac3d)."""
    check = {"requestPath": READY_PATH, "portSpecification": "USE_SERVING_PORT"}
    config = {"type": "HTTP", "httpHealthCheck": check}
    return service_policy(run, "HealthCheckPolicy", service, {"config": config})


def backend_policy(run: Run, service: str) -> dict[str, Any]:
    """The load balancer's timeout for `service`'s requests, and the time it gives requests in
    flight on a pod that goes (gcpbackendpolicy_types.go: timeoutSec >= 1,
    connectionDraining.drainingTimeoutSec 0-3600)."""
    default = {
        "timeoutSec": REQUEST_TIMEOUT_S,
        "connectionDraining": {"drainingTimeoutSec": REQUEST_TIMEOUT_S},
    }
    return service_policy(run, "GCPBackendPolicy", service, default)


def load_balancer_ingress(run: Run, name: str, pod_labels: dict[str, str]) -> dict[str, Any]:
    """The namespace admits only its own pods (`pods.namespace`'s NetworkPolicy); the load
    balancer's proxies and Google's health checks reach the predictor pods (champion's and
    canary's alike: same labels) from outside it, on the port they serve (the Gateway's
    network endpoint groups send to the pod's port, the Service's targetPort)."""
    sources = (PROXY_ONLY_CIDR, *HEALTH_CHECK_RANGES)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(run, f"{name}-from-load-balancer", "network"),
        "spec": {
            "podSelector": {"matchLabels": pod_labels},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"ipBlock": {"cidr": cidr}} for cidr in sources],
                    "ports": [{"protocol": "TCP", "port": SERVE_PORT}],
                }
            ],
        },
    }
