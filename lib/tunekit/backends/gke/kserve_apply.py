"""Stage 06's applies on gke, in an order that keeps MLServer's Gateway routing only to
predictors that serve, and the waits that tell when they do.

The waits read the predictors' Deployments, not the InferenceService's conditions: `kubectl
wait --for=condition=...` holds out while `status.observedGeneration` is below
`metadata.generation` (kubectl pkg/cmd/wait/condition.go `checkCondition`), and KServe's
InferenceService reports its Deployment's observedGeneration there (inference_service_status.go
`PropagateRawStatus`), not its own: after a re-apply that leaves the Deployment alone (a canary
added or removed) such a wait runs to its timeout. A Deployment is named as its Service,
`{isvc}-predictor` or `{isvc}-{predictor name}-predictor` (constants.go PredictorServiceName).
"""

from __future__ import annotations

import copy
from typing import Any

from tunekit.backends.gke import workloads
from tunekit.backends.gke.shell import Shell
from tunekit.backends.gke.workloads.gateway import canary_percent, predictor_service
from tunekit.run import Run

# MLServer's Gateway, route, health checks: their own file (stage 07 deletes every 0[3-6]-*.yaml)
GATEWAY_MANIFEST, KSERVE_MANIFEST = "manifests/06-gateway.yaml", "manifests/06-kserve.yaml"
# How long the load balancer is given to take a new route before a backend it left goes away
# (Argo Rollouts waits 30 s by default before it scales the old pods down for the same reason:
# its `scaleDownDelaySeconds`)
SETTLE_S = 60
# The storage URI a predictor's Deployment was made from (pkg/constants/constants.go
# StorageInitializerSourceUriInternalAnnotationKey; components/predictor.go
# addStorageInitializerAnnotations puts it in the Deployment's metadata, single storageUri only)
SOURCE_URI = r"{.metadata.annotations.internal\.serving\.kserve\.io/storage-initializer-sourceuri}"


def apply_kserve(
    sh: Shell, run: Run, objects: list[dict[str, Any]], services: list[dict], challenger: str
) -> str:
    """Apply `objects` (the runtime, the InferenceServices `services`, MLServer's first, and
    their autoscalers) and MLServer's Gateway; wait until they serve. The URL of the Gateway in
    the VPC ("" where it has none).

    - During a rollout (a `challenger`): the canary joins, and the route reaches it once it
      serves.
    - A rollout that ends in a rollback: the route leaves the canary, then the canary goes.
    - One that ends in a promotion (the canary serves the new champion): the route sends
      everything to the canary while the champion's Deployment is replaced (Recreate: one GPU
      node each), then everything back, then the canary goes. No request meets a predictor
      that is loading.
    """
    if challenger:
        sh.apply(KSERVE_MANIFEST, objects)
        wait_served(sh, run, services)
        sh.apply(GATEWAY_MANIFEST, workloads.mlserver_gateway(run, canary_percent(run)))
        return gateway_url(sh, run)
    namespace, name = run.settings.namespace, run.settings.registered_model_name
    mlserver, others = services[0], [o for o in objects if o is not services[0]]
    live = sh.kube.get("serving.kserve.io/v1beta1", "InferenceService", name, namespace)
    live_canaries = (live or {}).get("spec", {}).get("canary") or []
    if live_canaries and _uri(live_canaries[0]["predictor"]) == _uri(mlserver["spec"]["predictor"]):
        sh.apply(GATEWAY_MANIFEST, workloads.mlserver_gateway(run, to_canary=100))
        settle(sh, "the route sends every request to the canary, the new champion")
        bridge = copy.deepcopy(mlserver)
        bridge["spec"]["canary"] = live_canaries
        sh.apply(KSERVE_MANIFEST, [bridge, *others])
        wait_served(sh, run, [bridge])
    sh.apply(GATEWAY_MANIFEST, workloads.mlserver_gateway(run))
    if live_canaries:
        settle(sh, "the route leaves the canary before KServe deletes it")
    sh.apply(KSERVE_MANIFEST, objects)
    wait_served(sh, run, services)
    return gateway_url(sh, run)


def _uri(predictor: dict[str, Any]) -> str:
    return str(predictor.get("model", {}).get("storageUri", ""))


def deployments(isvc: dict[str, Any]) -> list[tuple[str, str]]:
    """The Deployments an InferenceService's predictors run in, each with the storage URI it
    must be made from ("" for `storageUris`, which KServe does not annotate)."""
    name = isvc["metadata"]["name"]
    found = [(predictor_service(name), _uri(isvc["spec"]["predictor"]))]
    for canary in isvc["spec"].get("canary") or []:
        found.append(
            (predictor_service(name, canary["predictor"]["name"]), _uri(canary["predictor"]))
        )
    return found


def wait_served(sh: Shell, run: Run, services: list[dict[str, Any]]) -> None:
    """Wait until each predictor's Deployment exists, was made from this apply's storage URI
    (so the controller has reconciled it: a rollout status taken before would report the
    previous one) and has rolled out. MLServer's first: by the time it is done, KServe has long
    reconciled the others, whose storageUris it does not annotate."""
    namespace = f"-n={run.settings.namespace}"
    for isvc in services:
        for deployment, uri in deployments(isvc):
            sh.run(["kubectl", "wait", "--for=create", f"deployment/{deployment}", namespace,
                    "--timeout=10m"])  # fmt: skip
            if uri:
                sh.run(["kubectl", "wait", f"deployment/{deployment}", namespace,
                        f"--for=jsonpath={SOURCE_URI}={uri}", "--timeout=10m"])  # fmt: skip
            sh.run(["kubectl", "rollout", "status", f"deployment/{deployment}", namespace,
                    "--timeout=30m"])  # fmt: skip


def settle(sh: Shell, why: str) -> None:
    """Give the load balancer `SETTLE_S` to take a new route."""
    sh.note(why)
    sh.run(["sleep", str(SETTLE_S)])


def gateway_url(sh: Shell, run: Run) -> str:
    """The URL of MLServer's Gateway in the VPC, once its load balancer is programmed."""
    gateway, namespace = f"gateway/{workloads.GATEWAY}", f"-n={run.settings.namespace}"
    sh.run(["kubectl", "wait", gateway, namespace, "--for=condition=Programmed",
            "--timeout=15m"])  # fmt: skip
    address = sh.output(["kubectl", "get", gateway, namespace,
                         "-o=jsonpath={.status.addresses[0].value}"]).strip()  # fmt: skip
    address = address or str(sh.live(""))
    return f"http://{address}" if address else ""
