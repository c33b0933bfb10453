"""`tunekit sweep`: the search space, the gke profile's Katib Experiment, and (end to end) a
local sweep of real fine-tunes tracked as child runs of one MLflow parent run."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import tunekit
from tunekit.backends.gke import katib as katib_module
from tunekit.backends.gke import workloads
from tunekit.settings import SettingsError, load_settings
from tunekit.sweep import Sweep, parse_grid, searchable

from .conftest import CLOUD_TOOLS, fake_tools, gke_series, rendered, rendered_one, tunekit_cli
from .schemas import validate

# --- the search space


def test_a_grid_is_parsed_into_values_per_setting():
    assert parse_grid(["lora_r=8,16", "learning_rate = 1e-3, 2e-3"]) == {
        "lora_r": ("8", "16"),
        "learning_rate": ("1e-3", "2e-3"),
    }


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["lora_r"], "expected SETTING=V1,V2"),
        (["lora_r="], "expected SETTING=V1,V2"),
        (["no_such_setting=1,2"], "not a setting a sweep can vary"),
        (["gpu_count=1,2"], "not a setting a sweep can vary"),  # a platform setting
        (["experiment_name=a,b"], "not a setting a sweep can vary"),
        (["lora_r=8", "lora_r=16"], "given twice"),
        (["lora_r=8,8"], "repeated"),
    ],
)
def test_a_bad_grid_is_refused_naming_the_problem(items, message):
    with pytest.raises(SettingsError, match=message):
        parse_grid(items)


def test_a_value_no_trial_could_use_is_refused_before_anything_runs():
    base = load_settings(profile="local")
    with pytest.raises(
        SettingsError, match=r"(?s)lora_r.*\(in the sweep's trial \{'lora_r': '0'\}\)"
    ):
        Sweep(base, {"lora_r": ("8", "0")})
    with pytest.raises(SettingsError, match="--sampler"):
        Sweep(base, sampler="annealing")  # type: ignore[arg-type]


def test_a_sweep_is_named_by_its_base_settings_and_its_search():
    base = load_settings(profile="local")
    sweep = Sweep(base)
    assert sweep.space == {"lora_r": ("8", "16"), "learning_rate": ("0.001", "0.002")}
    assert sweep.trial_count == 4
    gke = load_settings(profile="gke", project_id="p")  # the default space follows the base
    assert Sweep(gke).space == {"lora_r": ("8", "16"), "learning_rate": ("0.0001", "0.0002")}
    assert re.fullmatch(r"sw-[0-9a-f]{10}", sweep.id)
    assert Sweep(load_settings(profile="local")).id == sweep.id  # the same sweep again
    assert Sweep(base, {"lora_r": ("8", "32")}).id != sweep.id
    assert Sweep(base, sampler="random", trials=4).id != sweep.id
    assert Sweep(load_settings(profile="local", max_steps=10)).id != sweep.id
    # a platform setting does not change what the trials train
    assert Sweep(load_settings(profile="local", service_timeout_s=30)).id == sweep.id


def test_each_trial_is_its_own_fine_tune_in_the_sweep():
    sweep = Sweep(load_settings(profile="local"))
    trials = [sweep.trial_settings(values) for values in sweep.grid()]
    assert {(t.lora_r, t.learning_rate) for t in trials} == {
        (8, 1e-3), (8, 2e-3), (16, 1e-3), (16, 2e-3)
    }  # fmt: skip
    assert {t.sweep_id for t in trials} == {sweep.id}
    assert len({t.finetune_job for t in trials}) == 4
    # a trial is not the single fine-tune of the same values: its run is the sweep's child
    single = load_settings(profile="local", lora_r=8, learning_rate=1e-3)
    assert single.finetune_job not in {t.finetune_job for t in trials}
    assert "sweep_id" not in searchable() and "lora_r" in searchable()


def test_runs_are_ranked_by_score_then_eval_loss_unscored_last():
    """One ranking (tunekit.objective) for stage 04's table and a sweep's trials: the mean of
    the held-out and the validation execution accuracy, then the lower eval loss."""
    from tunekit.objective import best_first, rank_key, score

    def row(name: str, held_out: float | None, validation: float | None, **more: float) -> dict:
        return {"id": name, "tuned_execution_accuracy": held_out,
                "validation_tuned_execution_accuracy": validation, **more}  # fmt: skip

    rows = [
        row("none", None, 0.9, eval_loss=0.1),
        row("nan", float("nan"), 0.9, eval_loss=0.1),
        row("no-validation", 0.99, None, eval_loss=0.1),  # evaluated before the validation set
        row("memorised", 0.95, 0.05, eval_loss=0.1),  # held-out alone would put it first
        row("low", 0.55, 0.55, eval_loss=0.2),
        row("tie-worse", 0.9, 0.7, eval_loss=0.8),
        row("best", 0.7, 0.9, eval_loss=0.3),
        row("no-loss", 0.8, 0.8),
    ]
    assert score(rows[6]) == pytest.approx(0.8)
    ranked = [r["id"] for r in best_first(rows)]
    assert ranked[:5] == ["best", "tie-worse", "no-loss", "low", "memorised"]  # 0.8 ... 0.5
    assert set(ranked[5:]) == {"none", "nan", "no-validation"}
    # a failed trial never outranks a finished one, whatever it logged before failing
    assert rank_key(rows[6], scored=False) > rank_key(rows[4])


def test_a_sweep_summarized_again_reports_its_new_best(run, tmp_path):
    """A re-run of a sweep whose best changed (a failed trial that finishes on retry) leaves
    the new best's metrics on the parent run: MLflow keeps as latest the point with the highest
    (step, timestamp, value), so a summary stamped as the last one was kept the larger loss."""
    from mlflow import MlflowClient

    from tunekit.mlflow_record import PARENT_TAG, SWEEP_ROLE_TAG, SWEEP_TAG
    from tunekit.sweep import TABLE_FILE, parent_run, summarize

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")  # a real store, no server
    experiment = client.create_experiment("sweeps", artifact_location=str(tmp_path / "art"))
    run.state.update("mlflow", {"experiment_id": experiment})
    sweep = Sweep(run.settings, {"lora_r": ("8", "16")})

    def trial(parent: str, lora_r: str, status: str, **metrics: float) -> str:
        tags = {SWEEP_TAG: sweep.id, SWEEP_ROLE_TAG: "trial", PARENT_TAG: parent}
        trial_id = client.create_run(experiment, tags=tags).info.run_id
        client.log_param(trial_id, "tunekit.lora_r", lora_r)
        for name, value in metrics.items():
            client.log_metric(trial_id, name, value)
        client.set_terminated(trial_id, status)
        return trial_id

    def accuracy(value: float) -> dict[str, float]:
        return {"tuned_execution_accuracy": value, "validation_tuned_execution_accuracy": value,
                "score": value}  # fmt: skip

    parent = parent_run(run, client, sweep)
    first = trial(parent, "8", "FINISHED", **accuracy(0.5), eval_loss=1.0)
    trial(parent, "16", "FAILED", **accuracy(0.9), eval_loss=0.1)
    summary = summarize(run, client, sweep, parent)
    assert summary["best_run_id"] == first and summary["failed"] == 1
    assert client.get_run(parent).data.metrics["eval_loss"] == 1.0

    assert parent_run(run, client, sweep) == parent  # the same sweep again: its parent
    retried = trial(parent, "16", "FINISHED", **accuracy(0.5), eval_loss=0.4)
    summary = summarize(run, client, sweep, parent)
    assert summary["best_run_id"] == retried
    reported = client.get_run(parent)
    assert reported.data.tags["tunekit.sweep.best_run_id"] == retried
    assert reported.data.metrics["eval_loss"] == 0.4
    assert reported.info.status == "FINISHED"
    table = json.loads(Path(client.download_artifacts(parent, TABLE_FILE)).read_text())
    assert [t["run_id"] for t in table][:2] == [retried, first]
    assert table[-1]["status"] == "FAILED"


# --- the gke profile: a Katib Experiment (nothing of Katib runs here; its facts are cited)

KATIB = "https://github.com/kubeflow/katib/tree/v0.19.0"


@pytest.fixture(scope="module")
def katib(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The gke series as a dry run, then a 2x2 sweep on it, with every cloud tool a stand-in
    that records its call (there must be none)."""
    tmp = tmp_path_factory.mktemp("katib")
    path, calls = fake_tools(tmp, dict.fromkeys(CLOUD_TOOLS, "exit 1"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PATH", path)
        env.setenv("TUNEKIT_RUNS_DIR", str(tmp / "runs"))
        run = tunekit.start_run(tmp / "run", profile="gke", dry_run=True, project_id="demo-project")
        gke_series(run)
        space = parse_grid(["lora_r=8,16", "learning_rate=1e-4,2e-4"])
        sweep = Sweep(run.settings, space, parallel=2)
        result = tunekit.sweep(run, sweep)
    assert not calls.exists(), f"a dry run called a cloud tool: {calls.read_text()}"
    return {
        "run": run,
        "sweep": sweep,
        "result": result,
        "experiment": rendered_one(run, "Experiment", sweep.id),
        "config": rendered_one(run, "ConfigMap", f"{sweep.id}-config"),
        "job": rendered_one(run, "Job"),
        "policies": [o for o in rendered(run) if o["kind"] == "NetworkPolicy"],
        "collector": yaml.safe_load(
            (run.dir / "gke" / "katib" / "katib-config-change.yaml").read_text()
        ),
        "commands": (run.dir / "gke" / "commands.sh").read_text(),
    }


def _trial(experiment: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """The trial's Job as Katib makes it: `${trialParameters.<name>}` replaced by the value,
    named and put in the namespace (katib pkg/controller.v1beta1/experiment/manifest)."""
    spec = experiment["spec"]["trialTemplate"]
    text = json.dumps(spec["trialSpec"])
    for parameter in spec["trialParameters"]:
        text = text.replace(
            f"${{trialParameters.{parameter['name']}}}", values[parameter["reference"]]
        )
    job = json.loads(text)
    job["metadata"] |= {"name": f"{experiment['metadata']['name']}-abcd1234",
                        "namespace": experiment["metadata"]["namespace"]}  # fmt: skip
    return job


def test_the_experiment_validates_against_katibs_schema(katib):
    experiment = katib["experiment"]
    validate(experiment, workloads.K8S_VERSION)
    broken = copy.deepcopy(experiment)
    broken["spec"]["trialTemplate"]["primaryContainer"] = "train"  # a misspelt field
    with pytest.raises(ValueError, match="primaryContainer"):
        validate(broken, workloads.K8S_VERSION)
    # each trial's Job is a valid batch/v1 Job once Katib has filled in its values
    validate(_trial(experiment, {"lora_r": "8", "learning_rate": "1e-4"}), workloads.K8S_VERSION)


def test_the_experiment_passes_katibs_own_checks(katib):
    """Katib's admission webhook, pkg/webhook/v1beta1/experiment/validator/validator.go."""
    experiment, sweep = katib["experiment"], katib["sweep"]
    spec, template = experiment["spec"], experiment["spec"]["trialTemplate"]
    # the name: ^[a-z]([-a-z0-9]*[a-z0-9])?$, at most 40 characters (ValidateExperiment)
    name = experiment["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 40
    # the algorithm is one katib-config.yaml offers (manifests/.../katib-standalone)
    assert spec["algorithm"]["algorithmName"] in {"random", "tpe", "grid"}
    # categorical parameters take a list and no min/max/step (validateParameters)
    for parameter in spec["parameters"]:
        assert parameter["parameterType"] == "categorical"
        assert set(parameter["feasibleSpace"]) == {"list"}
    assert {p["name"]: tuple(p["feasibleSpace"]["list"]) for p in spec["parameters"]} == sweep.space
    # validateTrialTemplate: metadata.name and namespace omitted; every trialParameter has a
    # reference among spec.parameters and appears as ${trialParameters.<name>}; no placeholder
    # is left without one
    job = template["trialSpec"]
    assert "name" not in job["metadata"] and "namespace" not in job["metadata"]
    text = json.dumps(job)
    names = [p["name"] for p in template["trialParameters"]]
    assert {p["reference"] for p in template["trialParameters"]} == set(sweep.space)
    for parameter in names:
        assert f"${{trialParameters.{parameter}}}" in text
    assert set(re.findall(r"\$\{trialParameters\.(.+?)\}", text)) == set(names)
    # primaryContainerName names the Job's container; Katib's stdout collector wraps that
    # container's `command` in `sh -c` (pkg/webhook/v1beta1/pod/utils.go wrapWorkerContainer),
    # so it must have one (a bare image entrypoint is looked up in the registry)
    containers = job["spec"]["template"]["spec"]["containers"]
    primary = next(c for c in containers if c["name"] == template["primaryContainerName"])
    assert primary["command"][:3] == ["python", "-m", "tunekit.train"]
    # the metrics collector: stdout, with the default filter
    assert spec["metricsCollectorSpec"] == {"collector": {"kind": "StdOut"}}
    assert spec["maxTrialCount"] == 4 and spec["parallelTrialCount"] == 2
    assert spec["maxFailedTrialCount"] >= spec["maxTrialCount"]  # a failure stops no other


def test_the_trial_template_is_the_single_fine_tunes_job(katib):
    """One builder: the trial's Job is `finetune_job`'s, but for its name and labels (Katib
    names trials), the output folder and the trial's values."""
    job, trial = katib["job"], katib["experiment"]["spec"]["trialTemplate"]["trialSpec"]
    pod, trial_pod = job["spec"]["template"]["spec"], trial["spec"]["template"]["spec"]
    assert {k: v for k, v in trial["spec"].items() if k != "template"} == {
        k: v for k, v in job["spec"].items() if k != "template"
    }
    (container,), (trial_container,) = pod["containers"], trial_pod["containers"]
    for field in ("image", "command", "env", "resources", "volumeMounts", "securityContext"):
        assert trial_container[field] == container[field], field
    for field in ("serviceAccountName", "nodeSelector", "tolerations", "securityContext"):
        assert trial_pod.get(field) == pod.get(field), field
    assert [v["name"] for v in trial_pod["volumes"]] == [v["name"] for v in pod["volumes"]]
    args = trial_container["args"]
    assert args[args.index("--jobs-dir") + 1] == "/workspace/finetune"
    assert "--output-dir" not in args
    assert [a for a in args if a.startswith("--param=")] == [
        "--param=lora_r=${trialParameters.lora_r}",
        "--param=learning_rate=${trialParameters.learning_rate}",
    ]
    # the trials read the sweep's base settings, in the sweep
    config = yaml.safe_load(katib["config"]["data"]["config.yaml"])
    assert config["sweep_id"] == katib["sweep"].id
    assert trial_pod["volumes"][0]["configMap"]["name"] == f"{katib['sweep'].id}-config"


def test_katib_is_installed_where_missing_and_sees_the_namespace(katib):
    commands = katib["commands"]
    # katib's README: kubectl apply -k ".../manifests/v1beta1/installs/katib-standalone?ref=..."
    assert ("manifests/v1beta1/installs/katib-standalone?ref=" + katib_module.VERSION
            in commands)  # fmt: skip
    assert "kubectl wait deployment --all -n=kubeflow" in commands  # its kustomization's namespace
    # the webhook injects the metrics collector only into labelled namespaces
    # (manifests/v1beta1/components/webhook/webhooks.yaml, namespaceSelector)
    namespace = rendered_one(katib["run"], "Namespace")
    assert namespace["metadata"]["labels"][workloads.KATIB_INJECTION] == "enabled"
    assert katib["result"]["id"] == katib["sweep"].id


def _ingress_admits(
    policies: list[dict], namespace: str, source: tuple[str, dict], target: dict, port: int
) -> bool:
    """NetworkPolicy semantics for ingress (kubernetes.io/docs/concepts/services-networking/
    network-policies): a pod selected by no policy admits all; else some selecting policy
    must have a rule whose `from` entry matches the source (namespaceSelector AND podSelector
    in one entry; a bare podSelector means the policy's own namespace) and whose ports hold
    `port` (no ports: all). `source` is (namespace labels, pod labels); namespaces carry
    kubernetes.io/metadata.name."""

    def selects(selector: dict, labels: dict) -> bool:
        for key, value in selector.get("matchLabels", {}).items():
            if labels.get(key) != value:
                return False
        for expression in selector.get("matchExpressions", []):
            assert expression["operator"] == "Exists", expression
            if expression["key"] not in labels:
                return False
        return True

    source_ns, source_pod = source
    selecting = [p for p in policies if selects(p["spec"]["podSelector"], target)
                 and "Ingress" in p["spec"]["policyTypes"]]  # fmt: skip
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            for peer in rule.get("from", []):
                if "namespaceSelector" in peer:
                    in_namespace = selects(peer["namespaceSelector"], source_ns)
                else:
                    in_namespace = source_ns.get("kubernetes.io/metadata.name") == namespace
                if in_namespace and selects(peer.get("podSelector", {}), source_pod):
                    return True
    return False


def test_katib_controller_reaches_the_suggestion_service(katib):
    """Katib v0.19.0 creates the suggestion Deployment and Service in the Experiment's
    namespace (pkg/controller.v1beta1/suggestion/composer/composer.go, port 6789), its pods
    labelled katib.kubeflow.org/suggestion (pkg/controller.v1beta1/util/labels.go), and
    katib-controller (namespace kubeflow, manifests/v1beta1/components/controller/
    controller.yaml: label katib.kubeflow.org/component=controller) dials it
    (pkg/controller.v1beta1/util/suggestion.go). Dataplane V2 enforces the namespace's
    policies: with only `same-namespace` no trial is ever created."""
    policies, ns = katib["policies"], katib["run"].settings.namespace
    for policy in policies:
        validate(policy, workloads.K8S_VERSION)
    suggestion = {"katib.kubeflow.org/suggestion": katib["sweep"].id,
                  "katib.kubeflow.org/experiment": katib["sweep"].id}  # fmt: skip
    kubeflow = {"kubernetes.io/metadata.name": "kubeflow"}
    controller = (kubeflow, {"katib.kubeflow.org/component": "controller"})
    assert _ingress_admits(policies, ns, controller, suggestion, 6789)
    # nothing else from outside: another kubeflow pod, another namespace, another port
    assert not _ingress_admits(policies, ns, (kubeflow, {"app": "other"}), suggestion, 6789)
    elsewhere = ({"kubernetes.io/metadata.name": "default"}, controller[1])
    assert not _ingress_admits(policies, ns, elsewhere, suggestion, 6789)
    assert not _ingress_admits(policies, ns, controller, suggestion, 6788)
    assert not _ingress_admits(policies, ns, controller, {"app": "mlflow"}, 5000)
    # the namespace's own pods still reach each other
    own = ({"kubernetes.io/metadata.name": ns}, {"app": "x"})
    assert _ingress_admits(policies, ns, own, suggestion, 6789)
    assert controller[1] == katib_module.CONTROLLER_LABELS


def test_trial_pods_end_when_training_ends(katib):
    """Katib v0.19.0's StdOut collector waits for every top process of the pod (shared PID
    namespace, pkg/metricscollector/v1beta1/common/pns.go WaitMainProcesses) unless its
    katib-config entry has `waitAllProcesses: false` (pkg/apis/config/v1beta1/types.go
    MetricsCollectorConfig; const.go DefaultWaitAllProcesses "true", DefaultTimeout 0). The
    trials mount the bucket, so the GCS FUSE driver injects a native sidecar, which the kubelet
    stops only after the regular containers, the collector among them (gcs-fuse-csi-driver
    pkg/webhook/injection.go): with the default, no trial pod ever ends (katib#2614)."""
    trial = katib["experiment"]["spec"]["trialTemplate"]["trialSpec"]
    volumes = trial["spec"]["template"]["spec"]["volumes"]
    assert any(v.get("csi", {}).get("driver") == "gcsfuse.csi.storage.gke.io" for v in volumes)
    kind = katib["experiment"]["spec"]["metricsCollectorSpec"]["collector"]["kind"]
    [entry] = [c for c in katib["collector"]["runtime"]["metricsCollectors"] if c["kind"] == kind]
    assert entry["waitAllProcesses"] is False
    assert "katib-config.yaml read, changed as" in katib["commands"]
    # the change is made after Katib's install (which creates the ConfigMap), before the
    # Experiment exists (the collector is read at each pod's admission)
    commands = katib["commands"]
    install = commands.index("katib-standalone?ref=")
    assert (
        install
        < commands.index("katib-config.yaml read")
        < commands.index("03-sweep-experiment.yaml")
    )


# katib v0.19.0 manifests/v1beta1/installs/katib-standalone/katib-config.yaml, abridged: the
# shape the installed ConfigMap has (kind KatibConfig; init, runtime sections)
KATIB_CONFIG = """\
apiVersion: config.kubeflow.org/v1beta1
kind: KatibConfig
init:
  controller:
    webhookPort: 8443
runtime:
  metricsCollectors:
    - kind: StdOut
      image: ghcr.io/kubeflow/katib/file-metrics-collector:v0.19.0
    - kind: File
      image: ghcr.io/kubeflow/katib/file-metrics-collector:v0.19.0
  suggestions:
    - algorithmName: grid
      image: ghcr.io/kubeflow/katib/suggestion-optuna:v0.19.0
"""


def test_the_live_katib_config_is_changed_in_its_collector_entry_only():
    changed = yaml.safe_load(katib_module.collector_config(KATIB_CONFIG))
    before = yaml.safe_load(KATIB_CONFIG)
    collectors = changed["runtime"]["metricsCollectors"]
    assert collectors[0] == {**before["runtime"]["metricsCollectors"][0], "waitAllProcesses": False}
    assert collectors[1] == before["runtime"]["metricsCollectors"][1]  # File: as it was
    assert {k: v for k, v in changed.items() if k != "runtime"} == {
        k: v for k, v in before.items() if k != "runtime"
    }
    assert changed["runtime"]["suggestions"] == before["runtime"]["suggestions"]
    # idempotent: a second sweep changes nothing more
    again = katib_module.collector_config(katib_module.collector_config(KATIB_CONFIG))
    assert yaml.safe_load(again) == changed


def test_a_value_a_shell_would_split_is_refused(tmp_path):
    """Katib's webhook joins the trial container's command and args unquoted into `sh -c`
    (katib v0.19.0 pkg/webhook/v1beta1/pod/utils.go wrapWorkerContainer)."""
    from tunekit.run import Run

    settings = load_settings(profile="gke", project_id="p")
    # a list as JSON is a valid setting; `sh -c` would drop its quotes and glob its brackets
    sweep = Sweep(settings, {"lora_target_modules": ("q_proj,v_proj", '["q_proj", "o_proj"]')})
    with pytest.raises(SettingsError, match=r"sh -c"):
        katib_module.experiment(Run(tmp_path, settings), sweep, "http://mlflow", "parent")


def test_the_trainer_prints_the_objective_as_katibs_default_filter_reads_it(capsys):
    """The filter of Katib's stdout collector,
    pkg/metricscollector/v1beta1/common/const.go DefaultFilter."""
    from tunekit.objective import OBJECTIVE

    default_filter = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
    printed = [f"{name}={value}" for name, value in zip(OBJECTIVE, (0.915, 1.25e-05), strict=True)]
    found = {m[0]: float(m[1]) for line in printed for m in re.findall(default_filter, line)}
    assert found == {"score": 0.915, "eval_loss": 1.25e-05}
    source = (Path(tunekit.__file__).parent / "train.py").read_text()
    assert 'print(f"{name}={result[name]}"' in source


# --- end to end on the local profile: real fine-tunes, a real MLflow server

# Trials short enough for a test; a file dataset, so that a changed file can be shown refused
SHORT = {"max_steps": 6, "save_steps": 3, "logging_steps": 3, "eval_size": 20,
         "eval_max_new_tokens": 48, "eval_set_rows": 12}  # fmt: skip


def _params(values: dict[str, Any]) -> list[str]:
    return [arg for k, v in values.items() for arg in ("-p", f"{k}={v}")]


@pytest.fixture(scope="module")
def swept(platform: tunekit.Run, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`tunekit sweep` of a 2x2 grid on a run with stages 01-02, run twice (the second reuses
    every trial), then stage 04."""
    from tunekit.synthetic import generate

    rows = tmp_path_factory.mktemp("data") / "rows.jsonl"
    # the rows of `synthetic` with the suite's 600 rows: the tiny-gemma2 build is shared
    rows.write_text("".join(json.dumps(r) + "\n" for r in generate(600, seed=42)))
    base = {**SHORT, "dataset": rows}
    grid = ["--grid", "lora_r=4,8", "--grid", "learning_rate=1e-3,3e-3"]
    args = ["sweep", *grid, "--run-dir", str(platform.dir), *_params(base)]
    first = tunekit_cli(*args, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    again = tunekit_cli(*args, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    run = tunekit.open_run(platform.dir)
    state = run.state.section("sweep")
    registered = tunekit.register_model(run)
    return {"run": run, "rows": rows, "base": base, "state": state, "registry": registered,
            "first": first.stdout, "again": again.stdout}  # fmt: skip


@pytest.fixture
def client(swept: dict[str, Any]) -> Any:
    from tunekit.backends import backend_for

    return backend_for(swept["run"]).tracking_client(swept["run"])


def _children(client: Any, run: tunekit.Run, parent: str) -> list[Any]:
    experiment = run.state.section("mlflow")["experiment_id"]
    return client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'")


@pytest.mark.e2e
def test_a_grid_sweep_is_one_parent_run_with_a_finished_child_per_trial(swept, client):
    state, run = swept["state"], swept["run"]
    parent = client.get_run(state["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["tunekit.sweep_role"] == "parent"
    assert json.loads(parent.data.tags["tunekit.sweep.space"]) == {
        "lora_r": ["4", "8"], "learning_rate": ["1e-3", "3e-3"]
    }  # fmt: skip
    children = _children(client, run, parent.info.run_id)
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    params = {(c.data.params["tunekit.lora_r"], c.data.params["tunekit.learning_rate"])
              for c in children}  # fmt: skip
    assert params == {("4", "0.001"), ("4", "0.003"), ("8", "0.001"), ("8", "0.003")}
    assert {c.data.tags["tunekit.sweep_id"] for c in children} == {state["id"]}
    # the parent's best is the best child, ranked as stage 04 ranks runs
    best = max(children, key=lambda c: (c.data.metrics["score"],
                                        -c.data.metrics["eval_loss"]))  # fmt: skip
    assert parent.data.tags["tunekit.sweep.best_run_id"] == best.info.run_id == state["best_run_id"]
    for metric in ("score", "tuned_execution_accuracy", "validation_tuned_execution_accuracy",
                   "eval_loss", "tuned_exact_match"):  # fmt: skip
        assert parent.data.metrics[metric] == best.data.metrics[metric]
    # and a table of every trial on the parent
    path = client.download_artifacts(parent.info.run_id, "sweep/trials.json")
    trials = json.loads(Path(path).read_text())
    assert {t["run_id"] for t in trials} == {c.info.run_id for c in children}
    assert trials[0]["run_id"] == best.info.run_id


@pytest.mark.e2e
def test_running_the_same_sweep_again_reuses_its_trials_and_its_parent(swept, client):
    assert swept["first"].count("Starting fine-tune") == 4
    assert "Starting fine-tune" not in swept["again"]
    assert swept["state"]["parent_run_id"] in swept["first"]  # one parent, found again
    experiment = swept["run"].state.section("mlflow")["experiment_id"]
    parents = client.search_runs([experiment], "tags.`tunekit.sweep_role` = 'parent'")
    assert len(parents) == 1


@pytest.mark.e2e
def test_stage_04_registers_the_sweeps_best_trial_as_champion(swept, client):
    registry = swept["registry"]
    assert registry["run_id"] == swept["state"]["best_run_id"]
    version = client.get_model_version_by_alias(registry["registered_model_name"], "champion")
    assert version.run_id == swept["state"]["best_run_id"]  # a child, never the parent


@pytest.mark.e2e
def test_a_failed_trial_is_recorded_failed_and_the_others_finish(swept, client):
    run = tunekit.open_run(swept["run"].dir)
    # PEFT refuses a target module the model does not have (NoMatchingPeftModuleError)
    space = parse_grid(["lora_target_modules=no_such_proj,all-linear"])
    result = tunekit.sweep(run, Sweep(run.settings, space))
    children = {c.data.params["tunekit.lora_target_modules"]: c.info.status
                for c in _children(client, run, result["parent_run_id"])}  # fmt: skip
    assert children == {"no_such_proj": "FAILED", "all-linear": "FINISHED"}
    assert result["failed"] == 1 and result["finished"] == 1
    assert client.get_run(result["parent_run_id"]).info.status == "FINISHED"


@pytest.mark.e2e
def test_reproduce_gives_the_same_metrics_in_a_new_tagged_run(swept, client):
    original = swept["state"]["best_run_id"]
    done = tunekit_cli("reproduce", original, "--run-dir", str(swept["run"].dir), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    state = tunekit.open_run(swept["run"].dir).state.section("reproduce")
    copy_run, then = client.get_run(state["reproduction_run_id"]), client.get_run(original)
    assert copy_run.info.run_id != original and copy_run.info.status == "FINISHED"
    assert copy_run.data.tags["tunekit.reproduces"] == original
    assert "mlflow.parentRunId" not in copy_run.data.tags  # not a trial of the sweep
    for metric in ("tuned_execution_accuracy", "tuned_exact_match", "base_execution_accuracy",
                   "validation_tuned_execution_accuracy",
                   "validation_tuned_exact_match"):  # fmt: skip
        assert copy_run.data.metrics[metric] == then.data.metrics[metric], metric
    # on the CPU with the same seed, the training itself is the same
    assert copy_run.data.metrics["eval_loss"] == pytest.approx(
        then.data.metrics["eval_loss"], abs=1e-6
    )
    assert (
        copy_run.data.tags["tunekit.data.train_sha256"]
        == then.data.tags["tunekit.data.train_sha256"]
    )
    # what reproduction needs is on record: the code, the packages, the data
    for tag in ("tunekit.git_commit", "tunekit.git_dirty", "tunekit.package.torch",
                "tunekit.package.transformers", "tunekit.package.trl", "tunekit.package.peft",
                "tunekit.package.mlflow", "tunekit.data.eval_sha256"):  # fmt: skip
        assert then.data.tags.get(tag), tag
    # the registered model reproduces the same way: it is the same run, found by its alias
    from tunekit.reproduce import resolve_run_id

    name = swept["registry"]["registered_model_name"]
    assert resolve_run_id(client, f"models:/{name}@champion") == original


@pytest.mark.e2e
def test_reproduce_refuses_changed_data_before_training(swept, client):
    rows = swept["rows"]
    lines = rows.read_text().splitlines()
    changed = json.loads(lines[-1]) | {"question": "how many rows changed?"}
    rows.write_text("\n".join([*lines[:-1], json.dumps(changed)]) + "\n")
    run_dir = swept["run"].dir
    before = sorted((run_dir / "finetune").iterdir())
    done = tunekit_cli("reproduce", swept["state"]["best_run_id"], "--run-dir", str(run_dir))
    assert done.returncode == 2, done.stdout + done.stderr
    assert re.search(r"the (train|eval) rows differ from those run \w+ used: their digest was "
                     r"[0-9a-f]{12}, now [0-9a-f]{12}", done.stdout)  # fmt: skip
    assert sorted((run_dir / "finetune").iterdir()) == before  # nothing trained or started


def test_reproduce_refuses_another_commit_unless_told(monkeypatch):
    from tunekit.reproduce import Recorded, ReproduceRefused, check

    original = Recorded("r1", {"dataset": "synthetic"}, {"tunekit.git_commit": "a" * 40}, {})
    monkeypatch.setenv("TUNEKIT_GIT_COMMIT", "b" * 40)
    with pytest.raises(
        ReproduceRefused, match="made by commit aaaaaaaaaaaa, this kit is bbbbbbbbbbbb"
    ):
        check(original, None, allow_other_commit=False)
    warnings = check(original, None, allow_other_commit=True)
    assert any("another commit" in w for w in warnings)


def test_the_local_mlflow_caches_checked_logins(tmp_path, monkeypatch):
    """MLflow checks the password hash on every request unless its auth cache is on (3.17's
    auth/config.py `auth_cache_ttl_seconds`, default 0): 0.5 s a request here, 35 s of each
    fine-tune's end."""
    from mlflow.server.auth.config import read_auth_config

    from tunekit.tracking import AUTH_CACHE_TTL_S, auth_ini

    ini = tmp_path / "basic_auth.ini"
    ini.write_text(auth_ini("sqlite:///auth.db"))
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
    assert read_auth_config().auth_cache_ttl_seconds == AUTH_CACHE_TTL_S > 0


def test_a_trial_that_ends_early_waits_for_katibs_collector(monkeypatch):
    """Katib v0.19.0's stdout collector picks the trial's main process once, when it starts
    (pkg/metricscollector/v1beta1/common/pns.go); if the trainer has already exited (a driver
    refused at once, bad settings), it takes the FUSE sidecar for it, which ends only after the
    collector: the pod never ends. Under Katib the trainer stays until the collector has seen
    it; outside Katib it ends at once."""
    from tunekit import train

    waited: list[float] = []
    monkeypatch.setattr(train.time, "sleep", waited.append)

    def refused(argv: list[str] | None = None) -> dict:
        raise SystemExit("tunekit.train: no NVIDIA driver is visible")

    monkeypatch.setattr(train, "main", refused)
    with pytest.raises(SystemExit):
        train.trial_aware_main([])
    assert waited == []  # not a trial: no wait
    monkeypatch.setenv(train.KATIB_TRIAL_ENV, "sw-abc-1234")
    with pytest.raises(SystemExit, match="no NVIDIA driver"):
        train.trial_aware_main([])
    [wait] = waited
    assert train.TRIAL_MIN_S - 5 < wait <= train.TRIAL_MIN_S
    # the Job's command runs it: `python -m tunekit.train` (its __main__ block)
    source = Path(train.__file__).read_text()
    assert 'if __name__ == "__main__":\n    trial_aware_main()' in source
