"""Stages 05 and 06: the FastAPI Deployment, and KServe's InferenceServices (MLServer,
vLLM)."""

from __future__ import annotations

from typing import Any

from tunekit.backends import containers
from tunekit.backends.containers import HF_TOKEN
from tunekit.backends.gke.workloads.autoscaling import queue_autoscaling
from tunekit.backends.gke.workloads.gateway import (
    canary_percent,
    gateway_objects,
    predictor_service,
    weights,
)
from tunekit.backends.gke.workloads.pods import (
    CONTAINER_SECURITY,
    MODEL_DIR,
    PART_OF,
    SERVE_SA,
    gpu_placement,
    gpu_resources,
    in_cluster_url,
    meta,
    pod_container,
    pod_security,
    scratch,
    secret_env,
    workspace_volume,
)
from tunekit.models import is_local_model, places_base
from tunekit.records import Canary, VllmServer
from tunekit.run import Run
from tunekit.server_requests import challenger_version
from tunekit.serving_metrics import SERVED_ALIAS
from tunekit.traffic import CHALLENGER, CHAMPION

KSERVE_MODE = "Standard"  # KServe's mode without Knative (pkg/constants/constants.go)
HF_RUNTIME = "kserve-huggingfaceserver"  # KServe's ClusterServingRuntime for Hugging Face models
# The labels KServe gives an InferenceService's predictor pods (pkg/controller/v1beta1/
# inferenceservice/components/predictor.go `buildObjectMeta`; pkg/constants/constants.go
# InferenceServicePodLabelKey, KServiceComponentLabel), and its Deployment's name,
# {isvc}-predictor (constants.go `PredictorServiceName`)
ISVC_POD_LABEL, COMPONENT_LABEL = "serving.kserve.io/inferenceservice", "component"
CANARY = (
    "challenger"  # the MLServer canary's predictor.name: Deployment {isvc}-challenger-predictor
)


# --- stage 05: FastAPI Deployment + Service


def serve_deployment(run: Run, model_uri: str, version: str, tracking_uri: str) -> list[dict]:
    """`python -m tunekit.serve` on the champion: a Deployment (probes on /healthz and /readyz)
    and a ClusterIP Service on port 80.

    A new version replaces the pod rather than starting a second one beside it (`Recreate`: a
    rolling update would need another GPU node). The HPA scales it on its queue
    (`autoscaling.queue_autoscaling`), so the Deployment names no replica count: each apply
    would reset it. A base model the fine-tune placed itself
    (tiny-gemma2) lives in the run's bucket folder, at the path the logged model records, so
    the pod mounts that folder read-only at the same place.
    """
    labels = {"app.kubernetes.io/name": "tunekit-serve"}
    health = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10}
    scratch_volumes, scratch_mounts = scratch(
        ("cache", "/home/tunekit/.cache", ""), ("tmp", "/tmp", "")
    )
    placed_base = places_base(run.settings.model_id)
    if placed_base:
        scratch_volumes.append(workspace_volume(run, read_only=True))
    container = pod_container(
        run,
        containers.serve(run, model_uri, version, tracking_uri, challenger_version(run)),
        cuda=True,
        resources=gpu_resources(run, mounts_bucket=placed_base),
        startupProbe={**health, "failureThreshold": 90},  # loading the model: up to 15 min
        livenessProbe=health,
        readinessProbe={"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        securityContext=CONTAINER_SECURITY,
        volumeMounts=scratch_mounts,
    )
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(run, "tunekit-serve", "serving"),
            "spec": {
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {
                        "labels": {**labels, **PART_OF},
                        **({"annotations": {"gke-gcsfuse/volumes": "true"}} if placed_base else {}),
                    },
                    "spec": {
                        "serviceAccountName": SERVE_SA,
                        "automountServiceAccountToken": False,
                        "securityContext": pod_security(),
                        **gpu_placement(run),
                        "containers": [container],
                        "volumes": scratch_volumes,
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(run, "tunekit-serve", "serving"),
            "spec": {
                "type": "ClusterIP",
                "selector": labels,
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
        *queue_autoscaling(run, "tunekit-serve", labels, "http"),
    ]


# --- stage 06: KServe


def mlserver_runtime(run: Run, tracking_uri: str, version: str) -> dict[str, Any]:
    """A ServingRuntime: the kit's MLServer image (mlserver-mlflow and the model's dependencies
    baked in) loading the model KServe's storage initializer put in /mnt/models (KServe mounts
    it, so the container does not). The kit's runtime loads and runs the model off MLServer's
    event loop, so the probes answer while it loads and under load."""

    def probe(path: str, **timing: int) -> dict[str, Any]:  # a fresh object each: no YAML alias
        return {"httpGet": {"path": path, "port": "http"}, **timing}

    container = pod_container(
        run,
        containers.mlserver(run, tracking_uri, version),
        mounts=False,
        cuda=True,  # its InferenceService gives it the GPU node
        securityContext={**CONTAINER_SECURITY, "readOnlyRootFilesystem": False},
        resources={
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"cpu": "1", "memory": "2Gi"},
        },
        # the server starts: up to 5 min
        startupProbe=probe("/v2/health/live", periodSeconds=10, failureThreshold=30),
        livenessProbe=probe("/v2/health/live", periodSeconds=10),
        # every model loaded (mlserver/handlers/dataplane.py `DataPlane.ready`)
        readinessProbe=probe("/v2/health/ready", periodSeconds=5),
    )
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": meta(run, "tunekit-mlserver", "serving"),
        "spec": {
            "supportedModelFormats": [{"name": "mlflow", "version": "2", "autoSelect": False}],
            "protocolVersions": ["v2"],
            "containers": [container],
        },
    }


def _inference_service(
    run: Run,
    name: str,
    model: dict[str, Any],
    annotations: dict[str, str] | None = None,
    **predictor: Any,
) -> dict[str, Any]:
    """An InferenceService (Standard mode, on the GPU pool) whose predictor serves `model`,
    with the serving account and the GPU resources of the other servers."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta(
            run,
            name,
            "serving",
            annotations={"serving.kserve.io/deploymentMode": KSERVE_MODE, **(annotations or {})},
        ),
        "spec": {
            "predictor": {
                "serviceAccountName": SERVE_SA,
                # one GPU node each: replace the pod, do not surge a second one beside it
                "deploymentStrategy": {"type": "Recreate"},
                **gpu_placement(run),
                **predictor,
                "model": {**model, "protocolVersion": "v2", "resources": gpu_resources(run)},
            }
        },
    }


def _mlserver_model(storage_uri: str, **extra: Any) -> dict[str, Any]:
    return {"modelFormat": {"name": "mlflow"}, "runtime": "tunekit-mlserver",
            "storageUri": storage_uri, **extra}  # fmt: skip


def mlserver_inference_service(
    run: Run, storage_uri: str, challenger_uri: str = "", challenger_version: str = ""
) -> dict[str, Any]:
    """The champion on the kit's MLServer runtime (Open Inference Protocol V2); during a
    rollout, the challenger as KServe's canary (`spec.canary`, Standard mode since v0.20:
    pkg/apis/serving/v1beta1/inference_service.go `CanarySpec`), its share of the traffic
    `challenger_share`.

    The canary is the stable predictor with its own fields merged over it (components/
    predictor.go: `mergo.Merge(..., WithOverride)`), at a fixed replica count (no autoscaling
    fields: the webhook refuses them, inference_service_validation.go `validateCanarySpecs`);
    its `predictor.name` is required and names its Deployment and Service
    `{isvc}-challenger-predictor`. It reports its own version: the env of the predictor's
    container is merged over the runtime's by name (utils.go `MergeRuntimeContainers`, a
    strategic merge patch). The kit's Gateway weighs the traffic between the two Services
    (`tunekit.backends.gke.workloads.gateway`); each Service answers its variant alone.
    """
    s = run.settings
    service = _inference_service(run, s.registered_model_name, _mlserver_model(storage_uri))
    if challenger_uri:
        version = [{"name": "TUNEKIT_SERVED_VERSION", "value": challenger_version},
                   {"name": SERVED_ALIAS, "value": CHALLENGER}]  # fmt: skip
        service["spec"]["canary"] = [
            {
                "predictor": {
                    "name": CANARY,
                    "model": _mlserver_model(challenger_uri, protocolVersion="v2", env=version),
                },
                "trafficPercent": canary_percent(run),
            }
        ]
    return service


def _vllm_models(run: Run, challenger: bool) -> dict[str, str]:
    """The request's `model` of each adapter vLLM serves, by alias (the challenger's during a
    rollout): `<name>-lora` the champion, `<name>-challenger` the challenger."""
    name = run.settings.registered_model_name
    return {CHAMPION: f"{name}-lora", **({CHALLENGER: f"{name}-challenger"} if challenger else {})}


def vllm_inference_service(run: Run, storage_uri: str, challenger_uri: str = "") -> list[dict]:
    """Beyond the tutorial: KServe's Hugging Face runtime (vLLM) serving the base model with the
    champion's LoRA adapter (and, during a rollout, the challenger's beside it), OpenAI-
    compatible (`/openai/v1/completions`, the request's `model` naming the adapter:
    `<name>-lora` the champion, `<name>-challenger` the challenger); scaled on its queue.

    Each adapter is one of the predictor's `storageUris`, downloaded to its own folder under
    /mnt/models (pkg/apis/serving/v1beta1/predictor.go `StorageUri`; the webhook refuses it
    beside `storageUri` and wants the paths to share a parent: inference_service_validation.go;
    the storage initializer mounts their common parent: storage_initializer_injector.go).
    vLLM's metrics carry the base model's name only, never the adapter's
    (vllm/v1/metrics/loggers.py `PrometheusStatLogger`: labels model_name, engine), so a
    rollout decides on the FastAPI server's per-adapter numbers.
    """
    s = run.settings
    name = f"{s.registered_model_name}-vllm"
    models = _vllm_models(run, bool(challenger_uri))
    uris = {CHAMPION: storage_uri, CHALLENGER: challenger_uri}  # each in /mnt/models/<alias>
    model = {
        "modelFormat": {"name": "huggingface"},
        # KServe's own runtime, named rather than auto-selected: with nvidia.com/gpu in the
        # limits the controller runs its CUDA build, the image tag with suffix -gpu (the plain
        # tag is the CPU build)
        "runtime": HF_RUNTIME,
        "args": [
            f"--model_name={name}",
            f"--model_id={s.model_id}",  # the base comes from the Hub
            "--backend=vllm",
            "--dtype=bfloat16",
            "--max-model-len=2048",
            "--enable-lora",
            f"--max-lora-rank={s.lora_r}",
            # one flag, every adapter after it: vLLM's LoRAParserAction (vllm/entrypoints/
            # openai/cli_args.py) sets the list it was given, so a second --lora-modules
            # would replace the first. The logged pyfunc model keeps the adapter in
            # artifacts/peft (tunekit.pyfunc_model)
            "--lora-modules",
            *(f"{model}={MODEL_DIR}/{alias}/artifacts/peft" for alias, model in models.items()),
            # adapters in one batch (vllm/config/lora.py max_loras, default 1: the scheduler
            # holds back a request of another adapter, vllm/v1/core/sched/scheduler.py)
            f"--max-loras={len(models)}",
            # one structured-output backend, named: with "auto", a grammar xgrammar cannot
            # parse goes to another backend that the engine then compiles with xgrammar and
            # dies (vllm-project/vllm#43920); named, a bad grammar is a 400. vLLM 0.24's flag
            # takes JSON (vllm/config/structured_outputs.py); KServe drops unknown flags, and
            # the dotted form, unread (huggingfaceserver/__main__.py parse_known_args)
            '--structured-outputs-config={"backend":"xgrammar"}',
        ],
        "env": secret_env(HF_TOKEN),
    }
    storage = [{"uri": uris[alias], "mountPath": f"{MODEL_DIR}/{alias}"} for alias in models]
    # KServe makes no HPA of its own for class external (reconcilers/hpa/hpa_reconciler.go
    # `shouldCreateHPA`); its own HPA reads Resource metrics only (a Pods metric is dropped)
    external = {"serving.kserve.io/autoscalerClass": "external"}
    service = _inference_service(run, name, model, external, storageUris=storage)
    pods = {ISVC_POD_LABEL: name, COMPONENT_LABEL: "predictor"}
    # the runtime's container port (config/runtimes/kserve-huggingfaceserver.yaml; KServe's
    # server answers /metrics there: python/kserve/kserve/protocol/rest/server.py)
    return [service, *queue_autoscaling(run, f"{name}-predictor", pods, 8080)]


def vllm_served(run: Run, challenger: str, vllm_version: tuple[int, ...]) -> VllmServer:
    """What stage 06 records of the vLLM InferenceService: its OpenAI URL in the cluster, the
    request's `model` of each adapter, the vLLM version (it decides the grammar's field)."""
    models = _vllm_models(run, bool(challenger))
    url = in_cluster_url(run, f"{run.settings.registered_model_name}-vllm-predictor")
    served: VllmServer = {
        "openai_url": f"{url}/openai/v1/completions",
        "model": models[CHAMPION],
        "vllm_version": list(vllm_version),
    }
    if challenger:
        served["challenger_model"] = models[CHALLENGER]
    return served


def canary_served(run: Run, challenger: str, challenger_uri: str) -> Canary:
    """What stage 06 records of MLServer's canary during a rollout."""
    name = run.settings.registered_model_name
    return {
        "model_version": challenger,
        "storage_uri": challenger_uri,
        "traffic_percent": canary_percent(run),
        "in_cluster_url": in_cluster_url(run, predictor_service(name, CANARY)),
    }


def mlserver_gateway(run: Run, to_canary: int | None = None) -> list[dict[str, Any]]:
    """MLServer's InferenceService at one address: the champion's predictor alone, or with the
    canary's beside it, which gets `to_canary` percent of the requests
    (`tunekit.backends.gke.workloads.gateway`)."""
    name = run.settings.registered_model_name
    pods = {ISVC_POD_LABEL: name, COMPONENT_LABEL: "predictor"}  # the canary's pods too
    canary = "" if to_canary is None else CANARY
    return gateway_objects(run, name, pods, weights(name, canary, to_canary or 0))


def vllm_serves(run: Run) -> bool:
    """The vLLM InferenceService needs a Hub base model (not tiny-gemma2 or a local folder) and
    an adapter of LoRA weights only (vLLM 0.24.0, in KServe 0.21's image, refuses
    `modules_to_save`: vllm/lora/peft_helper.py)."""
    s = run.settings
    return not is_local_model(s.model_id) and not s.lora_modules_to_save
