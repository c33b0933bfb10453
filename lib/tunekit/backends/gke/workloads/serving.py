"""Stages 05 and 06: the FastAPI Deployment, and KServe's InferenceServices (MLServer,
vLLM)."""

from __future__ import annotations

from typing import Any

from tunekit.backends import containers
from tunekit.backends.containers import HF_TOKEN
from tunekit.backends.gke.workloads.pods import (
    CONTAINER_SECURITY,
    MODEL_DIR,
    PART_OF,
    SERVE_SA,
    gpu_placement,
    gpu_resources,
    meta,
    pod_container,
    pod_security,
    scratch,
    secret_env,
    workspace_volume,
)
from tunekit.models import is_local_model, places_base
from tunekit.run import Run
from tunekit.server_requests import challenger_version

KSERVE_MODE = "Standard"  # KServe's mode without Knative (pkg/constants/constants.go)
HF_RUNTIME = "kserve-huggingfaceserver"  # KServe's ClusterServingRuntime for Hugging Face models


# --- stage 05: FastAPI Deployment + Service


def serve_deployment(run: Run, model_uri: str, version: str, tracking_uri: str) -> list[dict]:
    """`python -m tunekit.serve` on the champion: a Deployment (probes on /healthz and /readyz)
    and a ClusterIP Service on port 80.

    A new version replaces the pod rather than starting a second one beside it (`Recreate`: a
    rolling update would need another GPU node). A base model the fine-tune placed itself
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
                "replicas": 1,
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


def _inference_service(run: Run, name: str, model: dict[str, Any]) -> dict[str, Any]:
    """An InferenceService (Standard mode, on the GPU pool) whose predictor serves `model`
    from `storageUri`, with the serving account and the GPU resources of the other servers."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta(
            run, name, "serving", annotations={"serving.kserve.io/deploymentMode": KSERVE_MODE}
        ),
        "spec": {
            "predictor": {
                "serviceAccountName": SERVE_SA,
                # one GPU node each: replace the pod, do not surge a second one beside it
                "deploymentStrategy": {"type": "Recreate"},
                **gpu_placement(run),
                "model": {**model, "protocolVersion": "v2", "resources": gpu_resources(run)},
            }
        },
    }


def mlserver_inference_service(run: Run, storage_uri: str) -> dict[str, Any]:
    """The champion on the kit's MLServer runtime (Open Inference Protocol V2)."""
    model = {
        "modelFormat": {"name": "mlflow"},
        "runtime": "tunekit-mlserver",
        "storageUri": storage_uri,
    }
    return _inference_service(run, run.settings.registered_model_name, model)


def vllm_inference_service(run: Run, storage_uri: str) -> dict[str, Any]:
    """Beyond the tutorial: KServe's Hugging Face runtime (vLLM) serving the base model with the
    champion's LoRA adapter, OpenAI-compatible (`/openai/v1/completions`, model `<name>-lora`)."""
    s = run.settings
    name = f"{s.registered_model_name}-vllm"
    model = {
        "modelFormat": {"name": "huggingface"},
        # KServe's own runtime, named rather than auto-selected: with nvidia.com/gpu in the
        # limits the controller runs its CUDA build, the image tag with suffix -gpu (the plain
        # tag is the CPU build)
        "runtime": HF_RUNTIME,
        "storageUri": storage_uri,  # the adapter; the base comes from the Hub
        "args": [
            f"--model_name={name}",
            f"--model_id={s.model_id}",
            "--backend=vllm",
            "--dtype=bfloat16",
            "--max-model-len=2048",
            "--enable-lora",
            f"--max-lora-rank={s.lora_r}",
            # the logged pyfunc model keeps the adapter in artifacts/peft (tunekit.pyfunc_model)
            f"--lora-modules={s.registered_model_name}-lora={MODEL_DIR}/artifacts/peft",
            # one structured-output backend, named: with "auto", a grammar xgrammar cannot
            # parse goes to another backend that the engine then compiles with xgrammar and
            # dies (vllm-project/vllm#43920); named, a bad grammar is a 400. vLLM 0.24's flag
            # takes JSON (vllm/config/structured_outputs.py); KServe drops unknown flags, and
            # the dotted form, unread (huggingfaceserver/__main__.py parse_known_args)
            '--structured-outputs-config={"backend":"xgrammar"}',
        ],
        "env": secret_env(HF_TOKEN),
    }
    return _inference_service(run, name, model)


def vllm_serves(run: Run) -> bool:
    """The vLLM InferenceService needs a Hub base model (not tiny-gemma2 or a local folder) and
    an adapter of LoRA weights only (vLLM 0.24.0, in KServe 0.21's image, refuses
    `modules_to_save`: vllm/lora/peft_helper.py)."""
    s = run.settings
    return not is_local_model(s.model_id) and not s.lora_modules_to_save
