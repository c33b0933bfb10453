"""The sweep's cluster side on GKE: Katib (v0.19.0) installed, configured and followed.

`run_sweep` is the one entry point (`Gke.sweep` calls it): Kubeflow is folding hyperparameter
search into Trainer and deprecating Katib (kubeflow/trainer#3562, #3565); moving the kit's
sweeps there replaces this module and nothing else. What each trial runs is the fine-tune's Job
(`workloads.finetune_job`); what the sweep tracks in MLflow is `tunekit.sweep`'s.

Facts of Katib v0.19.0 this module relies on (kubeflow/katib at that tag):
- its webhook server listens on 8443 (manifests/v1beta1/components/controller/service.yaml
  `targetPort: 8443`; pkg/apis/config/v1beta1/defaults.go `DefaultWebhookPort = 8443`), and the
  pod mutator admits every pod of a namespace labelled for injection, failurePolicy Fail by
  default (components/webhook/webhooks.yaml): terraform/main.tf opens 8443 to the control plane;
- katib-controller (namespace `kubeflow`, label `katib.kubeflow.org/component: controller`)
  calls the suggestion service, which runs in the Experiment's namespace, on 6789
  (pkg/controller.v1beta1/util/suggestion.go, suggestion/composer/composer.go; pod labels from
  util/labels.go): `suggestion_ingress` admits exactly that;
- the StdOut collector waits for every container's top process unless `waitAllProcesses` is
  false for its kind in ConfigMap kubeflow/katib-config (pkg/metricscollector/v1beta1/common/
  pns.go; pkg/apis/config/v1beta1/types.go MetricsCollectorConfig); GCS FUSE's native sidecar
  ends only after the collector, so with the default a trial pod never ends (katib#2614 is the
  same deadlock with Istio's sidecar): `collector_config` sets it, read at each pod's admission
  (pkg/util/v1beta1/katibconfig/config.go), so no restart is needed;
- the webhook joins the trial container's command and args unquoted into `sh -c`
  (pkg/webhook/v1beta1/pod/utils.go wrapWorkerContainer): `experiment` refuses values a shell
  would split or expand.
"""

from __future__ import annotations

import re
import time
from typing import Any

import yaml

from tunekit import distributed
from tunekit.backends.gke import workloads
from tunekit.backends.gke.kube import CRD
from tunekit.backends.gke.shell import Shell
from tunekit.objective import OBJECTIVE
from tunekit.run import Run
from tunekit.settings import SettingsError
from tunekit.sweep import Sweep

VERSION = "v0.19.0"  # katib-standalone, installed by the sweep where the cluster lacks it
GROUP = "kubeflow.org"
API = f"{GROUP}/v1beta1"
NAMESPACE = "kubeflow"  # its kustomization's namespace
INSTALL = f"github.com/kubeflow/katib.git/manifests/v1beta1/installs/katib-standalone?ref={VERSION}"
WEBHOOK_PORT = 8443
SUGGESTION_PORT = 6789  # pkg/controller.v1beta1/consts/const.go DefaultSuggestionPort
CONTROLLER_LABELS = {"katib.kubeflow.org/component": "controller"}  # controller.yaml
SUGGESTION_LABEL = "katib.kubeflow.org/suggestion"  # util/labels.go SuggestionLabels
CONFIG_MAP, CONFIG_KEY = "katib-config", "katib-config.yaml"  # installs/katib-standalone
# tunekit's samplers by Katib's names (katib-config.yaml of VERSION: random and tpe are its
# hyperopt suggestion, grid its Optuna one)
ALGORITHMS = {"grid": "grid", "random": "random", "tpe": "tpe"}
COLLECTOR_KIND = "StdOut"
# what a value may hold to pass through `sh -c` as one word, unexpanded
_SHELL_SAFE = re.compile(r"[A-Za-z0-9._+:/@%=,-]+")


def run_sweep(sh: Shell, run: Run, sweep: Sweep, tracking_uri: str, parent_run_id: str) -> None:
    """Install Katib where missing, let its collector end with the trial, admit its calls to
    the suggestion service, apply the Experiment, and follow it until it ends."""
    install(sh)
    use_collector(sh)
    objects = [suggestion_ingress(run), *experiment(run, sweep, tracking_uri, parent_run_id)]
    sh.apply("manifests/03-sweep-experiment.yaml", objects)
    follow(sh, run, sweep.id)


def install(sh: Shell) -> None:
    """Katib's standalone install (its CRDs, controller, DB, webhook in namespace `kubeflow`)
    unless the cluster has its Experiment CRD; waits until it is Available."""
    if sh.kube.exists(*CRD, f"experiments.{GROUP}"):
        return
    sh.apply_kustomization(INSTALL)
    sh.wait_available(NAMESPACE)


def collector_config(text: str) -> str:
    """katib-config.yaml with the StdOut collector waiting for the trial's main process only
    (`waitAllProcesses: false`); everything else as it was."""
    config = yaml.safe_load(text) or {}
    collectors = config.setdefault("runtime", {}).setdefault("metricsCollectors", [])
    entry = next((c for c in collectors if c.get("kind") == COLLECTOR_KIND), None)
    if entry is None:
        entry = {"kind": COLLECTOR_KIND,
                 "image": f"ghcr.io/kubeflow/katib/file-metrics-collector:{VERSION}"}  # fmt: skip
        collectors.append(entry)
    entry["waitAllProcesses"] = False
    return yaml.safe_dump(config, sort_keys=False)


def use_collector(sh: Shell) -> None:
    """Set `waitAllProcesses: false` for the StdOut collector in kubeflow/katib-config."""
    found = sh.kube.get("v1", "ConfigMap", CONFIG_MAP, NAMESPACE)
    what = f"ConfigMap {NAMESPACE}/{CONFIG_MAP}"
    if found is None:
        if not sh.record_only:
            raise RuntimeError(f"{what} not found: Katib's install is incomplete")
        # a plan has no cluster to read the file from: it shows the change (the rest is kept)
        change = yaml.safe_load(collector_config(""))
        path = sh.write("katib/katib-config-change.yaml", change)
        sh.note(f"{what}: {CONFIG_KEY} read, changed as {path} shows, applied server-side")
        return
    data = {**found.get("data", {}), CONFIG_KEY: collector_config(found["data"][CONFIG_KEY])}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": NAMESPACE},
        "data": data,
    }
    # under katib/, not manifests/: stage 07 deletes what manifests/ holds, and Katib's own
    # ConfigMap must stay while its controller clears the sweep's objects
    sh.apply("katib/katib-config.yaml", [config_map])


def suggestion_ingress(run: Run) -> dict[str, Any]:
    """A NetworkPolicy that lets katib-controller reach the sweep's suggestion service (the
    namespace's other policy admits only its own pods)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": workloads.meta(run, "katib-suggestion", "network"),
        "spec": {
            "podSelector": {"matchExpressions": [{"key": SUGGESTION_LABEL, "operator": "Exists"}]},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {  # one entry: the controller's pods in Katib's namespace
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}
                            },
                            "podSelector": {"matchLabels": CONTROLLER_LABELS},
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": SUGGESTION_PORT}],
                }
            ],
        },
    }


def experiment(
    run: Run, sweep: Sweep, tracking_uri: str, parent_run_id: str
) -> list[dict[str, Any]]:
    """The ConfigMap with the sweep's base settings and the Katib Experiment `<sweep id>`.

    Its trial template is `finetune_objects`' Job (one builder), unnamed as Katib wants it
    (it names each trial), with the trial's values as `--param` over the config file and its
    output in `/workspace/finetune/<the trial settings' job name>` (`--jobs-dir`), as a single
    fine-tune of the same settings would write it. Katib's stdout collector reads the objective
    from the lines `tunekit.train` prints last (`name=value`).
    """
    if distributed.launched(sweep.base):
        raise ValueError(
            "a sweep's trials are single-process Jobs (Katib's trial template): sweep with "
            "nproc_per_node=1 and num_nodes=1"
        )
    for name, values in sweep.space.items():
        if unsafe := [v for v in values if not _SHELL_SAFE.fullmatch(v)]:
            raise SettingsError(
                f"sweep value(s) {unsafe} of {name}: Katib passes a trial's arguments through "
                "`sh -c` unquoted; use values of letters, digits and ._+:/@%=,- only"
            )
    base = sweep.base.model_copy(update={"sweep_id": sweep.id})
    # the fine-tune's own Job, each trial's values as parameters (Katib fills them in)
    params = {name: f"${{trialParameters.{name}}}" for name in sweep.space}
    configmap, job = workloads.finetune_objects(
        run, sweep.id, tracking_uri, base.to_yaml(), params=params
    )
    # unnamed, labelled by the sweep: Katib names each trial's Job
    job["metadata"] = {"labels": {workloads.SWEEP_LABEL: sweep.id, **workloads.PART_OF}}
    pod = job["spec"]["template"]
    pod["metadata"]["labels"] = {workloads.SWEEP_LABEL: sweep.id, **workloads.PART_OF}
    container = pod["spec"]["containers"][0]
    score, tie_break = OBJECTIVE
    spec = {
        "objective": {
            "type": "maximize",
            "objectiveMetricName": score,
            "additionalMetricNames": [tie_break],
        },
        "algorithm": _algorithm(sweep),
        "parallelTrialCount": sweep.parallel,
        "maxTrialCount": sweep.trial_count,
        "maxFailedTrialCount": sweep.trial_count,  # a failed trial does not stop the others
        "metricsCollectorSpec": {"collector": {"kind": COLLECTOR_KIND}},
        "parameters": [
            {"name": name, "parameterType": "categorical", "feasibleSpace": {"list": list(values)}}
            for name, values in sweep.space.items()
        ],
        "trialTemplate": {
            "primaryContainerName": container["name"],
            "trialParameters": [
                {"name": name, "reference": name, "description": f"setting {name}"}
                for name in sweep.space
            ],
            "trialSpec": job,
        },
    }
    annotations = {"tunekit.dev/mlflow-parent-run": parent_run_id}
    experiment = {
        "apiVersion": API,
        "kind": "Experiment",
        "metadata": workloads.meta(run, sweep.id, "sweep", annotations=annotations),
        "spec": spec,
    }
    return [configmap, experiment]


def _algorithm(sweep: Sweep) -> dict[str, Any]:
    """Katib's algorithm for the sampler; random and TPE seeded (hyperopt's `random_state`,
    katib pkg/suggestion/v1beta1/hyperopt/base_service.py); the grid has every point anyway."""
    algorithm: dict[str, Any] = {"algorithmName": ALGORITHMS[sweep.sampler]}
    if sweep.sampler != "grid":
        algorithm["algorithmSettings"] = [{"name": "random_state", "value": str(sweep.seed)}]
    return algorithm


def follow(sh: Shell, run: Run, name: str, poll_s: float = 30) -> None:
    """Wait for the Experiment to end, saying how many trials ran, succeeded and failed as
    they change."""
    sh.note(f"kubectl get experiment/{name} -n={run.settings.namespace} -w, until its "
            "condition Succeeded or Failed (followed through the API)")  # fmt: skip
    seen = None
    while (found := sh.kube.get(API, "Experiment", name, run.settings.namespace)) is not None:
        status = found.get("status", {})
        counts = {k: status.get(f"trials{k}", 0) for k in ("Running", "Succeeded", "Failed")}
        if counts != seen:
            print(f"sweep {name}: " + ", ".join(f"{v} {k.lower()}" for k, v in counts.items()))
            seen = counts
        true = {c["type"] for c in status.get("conditions", []) if c.get("status") == "True"}
        if ended := sorted(true & {"Succeeded", "Failed"}):
            print(f"sweep {name}: {ended[0]}")
            return
        time.sleep(poll_s)
