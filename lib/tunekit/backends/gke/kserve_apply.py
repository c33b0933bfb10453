"""Stage 06's applies on gke, in the order that keeps MLServer's Gateway routing only to
predictors that serve: its objects, the InferenceServices, the waits."""

from __future__ import annotations

from typing import Any

from tunekit.backends.gke import workloads
from tunekit.backends.gke.shell import Shell
from tunekit.run import Run

# MLServer's Gateway, route, health checks: their own file, applied before the InferenceService or
# after its canary is ready (stage 07 deletes every 0[3-6]-*.yaml)
GATEWAY_MANIFEST = "manifests/06-gateway.yaml"


def apply_kserve(
    sh: Shell, run: Run, objects: list[dict[str, Any]], services: list[dict], challenger: str
) -> str:
    """Apply `objects` (the runtime and the InferenceServices `services`) and MLServer's
    Gateway, wait until they serve (the canary too while there is a `challenger` version); the
    URL of the Gateway in the VPC ("" if it has none).

    On the champion alone the route goes first: it leaves a canary before KServe deletes it.
    During a rollout it goes once the canary is ready, which the InferenceService's Ready does
    not wait for (inference_service_status.go conditionSet: PredictorReady, IngressReady;
    components/predictor.go sets CanaryPredictorReady apart)."""
    namespace, name = f"-n={run.settings.namespace}", run.settings.registered_model_name
    canary = bool(challenger)
    gateway = workloads.mlserver_gateway(run, canary)
    if not canary:
        sh.apply(GATEWAY_MANIFEST, gateway)
    sh.apply("manifests/06-kserve.yaml", objects)
    for service in services:
        sh.run(["kubectl", "wait", f"inferenceservice/{service['metadata']['name']}", namespace,
                "--for=condition=Ready", "--timeout=30m"])  # fmt: skip
    if canary:
        sh.run(["kubectl", "wait", f"inferenceservice/{name}", namespace,
                "--for=condition=CanaryPredictorReady", "--timeout=30m"])  # fmt: skip
        sh.apply(GATEWAY_MANIFEST, gateway)
    return gateway_url(sh, run)


def gateway_url(sh: Shell, run: Run) -> str:
    """The URL of MLServer's Gateway in the VPC, once its load balancer is programmed."""
    gateway, namespace = f"gateway/{workloads.GATEWAY}", f"-n={run.settings.namespace}"
    sh.run(["kubectl", "wait", gateway, namespace, "--for=condition=Programmed",
            "--timeout=15m"])  # fmt: skip
    address = sh.output(["kubectl", "get", gateway, namespace,
                         "-o=jsonpath={.status.addresses[0].value}"]).strip()  # fmt: skip
    address = address or str(sh.live(""))
    return f"http://{address}" if address else ""
