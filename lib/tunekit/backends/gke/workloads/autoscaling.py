"""Autoscaling of the servers on their queue: Google Managed Prometheus scrapes each server
pod's `/metrics` (a PodMonitoring), and a HorizontalPodAutoscaler scales the Deployment on the
requests waiting per pod, read through the Custom Metrics Stackdriver Adapter.

Both servers export the queue under one name, vLLM's `vllm:num_requests_waiting` (a gauge:
vllm/v1/metrics/loggers.py; `tunekit.serving_metrics.WAITING` for the FastAPI server).
"""

from __future__ import annotations

from typing import Any

from tunekit.backends.gke.workloads.pods import meta
from tunekit.run import Run
from tunekit.serving_metrics import WAITING

# A Prometheus metric in Cloud Monitoring is prometheus.googleapis.com/<name>/<kind>; the
# adapter reads it with "|" for "/" (k8s-stackdriver custom-metrics-stackdriver-adapter
# README, "Metric names"; GoogleCloudPlatform/kubernetes-engine-samples ai-ml/
# llm-multihost-gpus/vllm-hpa.yaml scales vLLM on this very name)
QUEUE_METRIC = f"prometheus.googleapis.com|{WAITING}|gauge"
SCRAPE_INTERVAL = "15s"
# The adapter's manifest at a pinned commit of GoogleCloudPlatform/k8s-stackdriver (the last
# to change it, 2026-08-17): namespace custom-metrics, service account
# custom-metrics-stackdriver-adapter (terraform/iam.tf grants it roles/monitoring.viewer),
# image custom-metrics-stackdriver-adapter:v0.16.9-gke.0, APIService
# v1beta1.custom.metrics.k8s.io
ADAPTER_COMMIT = "af49d863755c0535f598cfde9288ae9a75251d38"
ADAPTER_MANIFEST = (
    f"https://raw.githubusercontent.com/GoogleCloudPlatform/k8s-stackdriver/{ADAPTER_COMMIT}/"
    "custom-metrics-stackdriver-adapter/deploy/production/adapter_new_resource_model.yaml"
)
ADAPTER_API = "v1beta1.custom.metrics.k8s.io"
ADAPTER_NAMESPACE, ADAPTER_SA = "custom-metrics", "custom-metrics-stackdriver-adapter"


def queue_autoscaling(
    run: Run, deployment: str, pod_labels: dict[str, str], port: int | str
) -> list[dict[str, Any]]:
    """A PodMonitoring of the pods with `pod_labels` (their `/metrics` on `port`) and an HPA
    of `deployment` (1 to `serve_max_replicas` pods) on the requests waiting per pod."""
    s = run.settings
    return [
        {
            # monitoring.googleapis.com/v1 (GoogleCloudPlatform/prometheus-engine charts/
            # operator/crds/monitoring.googleapis.com_podmonitorings.yaml: selector and
            # endpoints required; an endpoint needs port and interval)
            "apiVersion": "monitoring.googleapis.com/v1",
            "kind": "PodMonitoring",
            "metadata": meta(run, deployment, "serving"),
            "spec": {
                "selector": {"matchLabels": pod_labels},
                "endpoints": [{"port": port, "path": "/metrics", "interval": SCRAPE_INTERVAL}],
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta(run, deployment, "serving"),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": deployment,
                },
                "minReplicas": 1,
                "maxReplicas": s.serve_max_replicas,
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": QUEUE_METRIC},
                            "target": {
                                "type": "AverageValue",
                                "averageValue": str(s.serve_queue_target),
                            },
                        },
                    }
                ],
            },
        },
    ]
