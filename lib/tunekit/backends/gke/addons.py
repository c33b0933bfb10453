"""The add-ons the gke profile installs where a cluster lacks them, at pinned versions:
cert-manager and KServe (stage 06), Kubeflow Trainer (stage 03, a fine-tune of more than one
process). Katib, which only a sweep needs, is installed by the sweep's own module
(`tunekit.backends.gke.katib`, its version there)."""

from __future__ import annotations

import json
from typing import Any

from tunekit.backends.gke.kube import CRD, FIELD_MANAGER
from tunekit.backends.gke.shell import Shell
from tunekit.backends.gke.workloads import HF_RUNTIME, KSERVE_MODE, TRAINER_GROUP, autoscaling

# KServe (Standard mode, once RawDeployment: no Knative, no Istio) and the cert-manager it
# needs (v0.21.0's kserve-deps.env: v1.17.0 or newer), installed by stage 06 when the cluster
# has no KServe yet; tests/schemas.py validates against the same release's SDK.
KSERVE_VERSION, CERT_MANAGER_VERSION = "v0.21.0", "v1.17.2"
# The vLLM in KServe's Hugging Face runtime image, by KServe release: kserve v0.15.2
# python/huggingfaceserver/pyproject.toml (vllm = "0.8.5"), v0.20.0 and v0.21.0
# python/kserve/pyproject.toml (llm = ["vllm==0.24.0"])
KSERVE_VLLM = {"v0.15.2": (0, 8, 5), "v0.20.0": (0, 24, 0), "v0.21.0": (0, 24, 0)}
KSERVE_NAMESPACE = "kserve"
# its Deployments (install/v0.21.0/kserve.yaml: config/manager, config/llmisvc)
KSERVE_CONTROLLERS = ("kserve-controller-manager", "llmisvc-controller-manager")
# Kubeflow Trainer (its controller and JobSet in TRAINER_NAMESPACE), installed by stage 03
TRAINER_VERSION, TRAINER_NAMESPACE = "v2.3.0", "kubeflow-system"


def kserve_namespace() -> dict[str, Any]:
    """KServe's namespace, which its release's kserve.yaml no longer creates (v0.17 on)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KSERVE_NAMESPACE}}


def ensure_trainer(sh: Shell) -> None:
    """Kubeflow Trainer (its CRDs, controller and webhook, and the JobSet it builds on, in
    namespace kubeflow-system), then its training runtimes, unless the cluster has the
    TrainJob CRD; the order and the wait are upstream's (kubeflow/trainer v2.3.0
    docs/operator-guides/installation.md, hack/e2e-setup-cluster.sh)."""
    if sh.kube.exists(*CRD, f"trainjobs.{TRAINER_GROUP}"):
        return
    for overlay in ("manager", "runtimes"):
        sh.apply_kustomization("github.com/kubeflow/trainer.git/manifests/overlays/"
                               f"{overlay}?ref={TRAINER_VERSION}")  # fmt: skip
        if overlay == "manager":  # its webhook admits the runtimes
            sh.wait_available(TRAINER_NAMESPACE)


def ensure_kserve(sh: Shell) -> None:
    """cert-manager and KServe (Standard mode, once called RawDeployment) unless the
    cluster has them: KServe's CRDs, its Hugging Face runtime and the Standard default are
    each checked, so an install that stopped half-way is completed by a re-run."""
    releases = "https://github.com/{}/releases/download/{}/{}"
    if not sh.kube.exists(*CRD, "certificates.cert-manager.io"):
        cert_manager = releases.format(
            "cert-manager/cert-manager", CERT_MANAGER_VERSION, "cert-manager.yaml"
        )
        sh.run(["kubectl", "apply", "-f", cert_manager])
        sh.wait_available("cert-manager", timeout="5m")
    kserve = releases.format("kserve/kserve", KSERVE_VERSION, "{}")
    # --server-side: the InferenceService CRD is too large for client-side apply's annotation
    apply = ["kubectl", "apply", "--server-side", f"--field-manager={FIELD_MANAGER}",
             "--force-conflicts", "-f"]  # fmt: skip
    # cert-manager's and KServe's webhooks answer a little after their Deployments are
    # Available (the CA bundle is injected asynchronously): the applies that call them retry
    if sh.kube.exists(*CRD, "inferenceservices.serving.kserve.io"):
        check_kserve_version(sh)
    else:
        # the release's kserve.yaml has no Namespace since v0.17 (its objects need one)
        # (under addons/: stage 07 deletes what manifests/ holds, and KServe must stay
        # while it removes its objects' finalizers)
        sh.apply("addons/kserve-namespace.yaml", [kserve_namespace()])
        sh.run([*apply, kserve.format("kserve.yaml")], attempts=5)
    runtime = ("serving.kserve.io/v1alpha1", "ClusterServingRuntime", HF_RUNTIME)
    if not sh.kube.exists(*runtime):
        # the cluster resources hold LLMInferenceServiceConfigs, which the LLM controller's
        # webhook admits (failurePolicy Fail): both controllers first
        for controller in KSERVE_CONTROLLERS:
            sh.wait_available(KSERVE_NAMESPACE, deployment=controller)
        sh.run([*apply, kserve.format("kserve-cluster-resources.yaml")], attempts=5)
    mode = json.dumps({"data": {"deploy": json.dumps(
        {"defaultDeploymentMode": KSERVE_MODE})}})  # fmt: skip
    sh.run(["kubectl", "patch", "configmap/inferenceservice-config",
            f"-n={KSERVE_NAMESPACE}", "--type=merge", f"-p={mode}"])  # fmt: skip


def ensure_metrics_adapter(sh: Shell) -> None:
    """The Custom Metrics Stackdriver Adapter (the servers' HPAs read their queue through it,
    `workloads.autoscaling`) unless the cluster serves the custom metrics API already: its
    manifest at a pinned commit, then its Deployment Available. Its account reads Cloud
    Monitoring by terraform/iam.tf's grant."""
    if sh.kube.exists("apiregistration.k8s.io/v1", "APIService", autoscaling.ADAPTER_API):
        return
    sh.run(["kubectl", "apply", "-f", autoscaling.ADAPTER_MANIFEST], attempts=3)
    sh.wait_available(autoscaling.ADAPTER_NAMESPACE, timeout="5m")


def check_kserve_version(sh: Shell) -> None:
    """A cluster's own KServe must be the release the kit renders for: an older one refuses
    what the kit sets (v0.15's webhook and controller reject the `Standard` mode: pkg/apis/
    serving/v1beta1/configmap.go), a newer one may not serve what the kit renders."""
    controller = KSERVE_CONTROLLERS[0]
    found = sh.kube.get("apps/v1", "Deployment", controller, KSERVE_NAMESPACE)
    pod = (found or {}).get("spec", {}).get("template", {}).get("spec", {})
    images = [c.get("image", "") for c in pod.get("containers", [])]
    tags = {image.rpartition(":")[2] for image in images if "kserve-controller" in image}
    if tags and tags != {KSERVE_VERSION}:
        raise RuntimeError(
            f"the cluster runs KServe {', '.join(sorted(tags))} (deployment/{controller} in "
            f"{KSERVE_NAMESPACE}); the kit renders for {KSERVE_VERSION}: "
            "upgrade KServe to that release (https://github.com/kserve/kserve/releases) or "
            "deploy on a cluster without KServe"
        )
