"""Profile gke outside a dry run, against a FAKE Kubernetes API server (tests/kube_fake.py) and
FAKE cloud tools: there is no cluster and no cloud account on this machine. The kit's calls go
through the real `kubernetes` client; the fake plays the API server and, where a test says so,
a controller (a Job's pod, its logs, its outcome). MLflow, where one is needed, is real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

import tunekit
from tunekit import credentials
from tunekit.backends.gke import Gke, addons, workloads
from tunekit.backends.gke.kube import KubeError
from tunekit.backends.gke.shell import Shell
from tunekit.credentials import child_environment
from tunekit.stages import use_login

from .conftest import REPO, at_a_terminal, fake_tools
from .kube_fake import FakeKubeAPI
from .test_registry import finetune as logged_finetune

NS = "tunekit"
RESULT = {"mlflow_run_id": "abc123", "model_uri": "runs:/abc123/model", "steps": 500,
          "eval_loss": 0.25}  # fmt: skip


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKubeAPI]:
    """The fake API server as the kubeconfig's current context, and fake cloud tools: gcloud
    finds the images built and prints the fine-tune's result.json; the others succeed."""
    with FakeKubeAPI() as api:
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path)))
        result = json.dumps(RESULT)
        path, _ = fake_tools(tmp_path / "tools", {
            "gcloud": f"case \"$*\" in *'storage cat'*) echo '{result}';; esac",
            "terraform": ":", "helm": ":", "kubectl": ":",
        })  # fmt: skip
        monkeypatch.setenv("PATH", path)
        monkeypatch.setenv("HF_TOKEN", "hf_cluster_test_token_456")
        yield api


def _run(tmp_path: Path, **settings: Any) -> tunekit.Run:
    return tunekit.start_run(tmp_path / "run", profile="gke", project_id="p1", **settings)


def test_stage_01_reads_terraform_counts_gpus_and_applies_server_side(tmp_path, monkeypatch,
                                                                      capsys):  # fmt: skip
    outputs = {k: {"value": v} for k, v in {
        "cluster_name": "tk", "location": "europe-west4", "bucket": "b-from-terraform",
        "registry": "europe-west4-docker.pkg.dev/p1/tunekit",
        "build_service_account": "tk-build@p1.iam.gserviceaccount.com"}.items()}  # fmt: skip
    with FakeKubeAPI() as api:
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path)))
        path, calls = fake_tools(tmp_path / "tools", {
            "terraform": f"case \"$*\" in *output*) echo '{json.dumps(outputs)}';; esac",
            "gcloud": ":",
        })  # fmt: skip
        monkeypatch.setenv("PATH", path)
        for name, gpus in (("gpu-1", "2"), ("cpu-1", None)):
            labels = {"cloud.google.com/gke-accelerator": "nvidia-l4"} if gpus else {}
            allocatable = {"nvidia.com/gpu": gpus} if gpus else {}
            api.put({"apiVersion": "v1", "kind": "Node", "status": {"allocatable": allocatable},
                     "metadata": {"name": name, "labels": labels}})  # fmt: skip
        run = _run(tmp_path, cluster_name="tk")
        cluster = tunekit.create_cluster(run)
        applied = api.applied()
    assert cluster["bucket"] == "b-from-terraform" and cluster["gpus_ready"] == 2
    called = calls.read_text().splitlines()
    assert called[0].startswith("terraform -chdir=") and called[0].endswith("init -input=false")
    assert any("get-credentials tk" in c and c.endswith("--dns-endpoint") for c in called)
    kinds = [body["kind"] for _, _, _, body in applied]
    assert kinds[0] == "Namespace" and "ServiceAccount" in kinds
    for _, query, headers, _ in applied:  # server-side apply, as field manager tunekit
        assert headers["Content-Type"] == "application/apply-patch+yaml"
        assert query["fieldManager"] == ["tunekit"]
    assert "2 nvidia-l4 GPU(s) ready" in capsys.readouterr().out


def test_only_not_found_makes_a_secret_absent(cluster, tmp_path):
    """Item 11. A Secret that cannot be read (403 here; a timeout or a 500 alike) is not a
    missing one: new passwords would lock MLflow out of the PostgreSQL that keeps the old."""
    cluster.errors[f"/api/v1/namespaces/{NS}/secrets/{credentials.DATABASE}"] = 403
    run = _run(tmp_path)
    with pytest.raises(KubeError, match=rf"reading Secret {NS}/{credentials.DATABASE}.*403"):
        tunekit.start_mlflow(run)
    assert cluster.applied() == []  # nothing written, nothing applied


def test_existing_secrets_are_kept_and_missing_ones_applied_server_side(cluster, tmp_path):
    kept = {"username": "mlflow", "password": "the-one-postgres-has-0123"}
    run = _run(tmp_path)
    cluster.put(workloads.secret(run, credentials.DATABASE, kept))
    Gke()._ensure_secrets(Shell(run, "02-mlflow"), run)
    applied = {body["metadata"]["name"]: body for _, _, _, body in cluster.applied()}
    assert set(applied) == {credentials.ADMIN, credentials.READER}
    for body in applied.values():
        # server-side apply: no last-applied-configuration annotation repeats the values
        assert "kubectl.kubernetes.io/last-applied-configuration" not in json.dumps(body)
        assert len(body["stringData"]["password"]) == 32
    assert cluster.get("secrets", NS, credentials.DATABASE)["data"]["password"] == (
        "dGhlLW9uZS1wb3N0Z3Jlcy1oYXMtMDEyMw=="  # base64 of the kept password
    )
    script = (run.dir / "gke" / "commands.sh").read_text()
    assert f"Secret {credentials.DATABASE} exists: kept" in script
    values = [b["stringData"]["password"] for b in applied.values()]
    leaks = [
        p for p in run.dir.rglob("*") if p.is_file() and any(v in p.read_text() for v in values)
    ]
    assert leaks == []


# --- stage 03, a sweep: Katib's collector configured on the live cluster


def test_the_sweep_changes_katibs_live_collector_entry_and_keeps_the_rest(cluster, tmp_path):
    """The ConfigMap kubeflow/katib-config that Katib's install made is read, its StdOut entry
    set to `waitAllProcesses: false` and applied back whole (tunekit.backends.gke.katib)."""
    from tunekit.backends.gke import katib

    from .test_sweep import KATIB_CONFIG

    run = _run(tmp_path)
    sh = Shell(run, "03-sweep")
    with pytest.raises(RuntimeError, match="kubeflow/katib-config not found"):
        katib.use_collector(sh)  # no Katib: an error, not a config made up
    assert cluster.applied() == []
    installed = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "katib-config", "namespace": "kubeflow"},
                 "data": {"katib-config.yaml": KATIB_CONFIG, "other": "kept"}}  # fmt: skip
    cluster.put(installed)
    katib.use_collector(sh)
    [(path, _, _, body)] = cluster.applied()
    assert path == "/api/v1/namespaces/kubeflow/configmaps/katib-config"
    assert body["data"]["other"] == "kept"
    config = yaml.safe_load(body["data"]["katib-config.yaml"])
    stdout = next(c for c in config["runtime"]["metricsCollectors"] if c["kind"] == "StdOut")
    assert stdout["waitAllProcesses"] is False
    assert config["init"] == yaml.safe_load(KATIB_CONFIG)["init"]
    # not under manifests/: stage 07 deletes what that folder holds (`0[3-6]-*.yaml`), and
    # Katib's own ConfigMap must stay while its controller clears the sweep's objects
    written = {p.relative_to(run.dir / "gke").as_posix() for p in (run.dir / "gke").rglob("*.yaml")}
    assert "katib/katib-config.yaml" in written
    assert not [p for p in written if p.startswith("manifests/") and "katib-config" in p]


# --- stage 03: the fine-tune Job


class JobController:
    """Plays the Job controller for the fake API: each applied Job gets a pod; the pod's phase,
    log and the Job's final condition come from `plan` (one entry per attempt)."""

    def __init__(self, api: FakeKubeAPI, plan: list[dict[str, Any]]):
        self.api, self.plan, self.jobs = api, plan, []
        api.on_apply = self.applied
        api.after_logs = self.finished

    def applied(self, obj: dict[str, Any]) -> None:
        if obj["kind"] != "Job":
            return
        step = self.plan[len(self.jobs)]
        self.jobs.append(obj)
        name = obj["metadata"]["name"]
        pod = f"{name}-pod"
        status: dict[str, Any] = {"phase": step["phase"]}
        if step["phase"] == "Pending":
            unscheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
            status["conditions"] = [{**unscheduled, "message": step["why"]}]
        labels = {"batch.kubernetes.io/job-name": name}
        self.api.put({"apiVersion": "v1", "kind": "Pod", "status": status,
                      "metadata": {"name": pod, "namespace": NS, "labels": labels}})  # fmt: skip
        self.api.logs[pod] = step.get("log", "")
        self.api.put({"apiVersion": "v1", "kind": "Event", "type": "Warning",
                      "reason": step.get("event", "Scheduled"), "message": step.get("why", "-"),
                      "involvedObject": {"kind": "Pod", "name": pod},
                      "metadata": {"name": f"{pod}.1", "namespace": NS}})  # fmt: skip

    def finished(self, pod: str) -> None:
        job = self.jobs[-1]
        outcome = self.plan[len(self.jobs) - 1]["outcome"]
        reason = {"Failed": "PodFailurePolicy", "Complete": "Completed"}[outcome]
        condition = {"type": outcome, "status": "True", "reason": reason, "message": "the fake"}
        self.api.put({**job, "status": {"conditions": [condition]}})


TRAINING_LOG = "step 10/500 loss 1.2\nstep 20/500 loss 1.1\n"


def test_a_failed_job_ends_the_stage_with_its_logs_and_a_rerun_starts_a_new_attempt(
    cluster, tmp_path, capsys
):
    """Item 6. `kubectl wait --for=condition=complete --timeout=24h` never returns for a Job that
    failed; a Job named by the settings' digest alone was re-applied, unchanged, by a re-run."""
    crash = TRAINING_LOG + "Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n"
    JobController(cluster, [
        {"phase": "Running", "log": crash, "outcome": "Failed", "event": "BackOff",
         "why": "Back-off restarting failed container"},
        {"phase": "Running", "log": TRAINING_LOG, "outcome": "Complete"},
    ])  # fmt: skip
    run = _run(tmp_path)
    started = time.monotonic()
    with pytest.raises(RuntimeError) as failed:
        tunekit.finetune(run)
    assert time.monotonic() - started < 60
    message = str(failed.value)
    assert "failed (PodFailurePolicy" in message and "CUDA out of memory" in message
    assert "Back-off restarting failed container" in message  # the events
    assert "Re-run stage 03 to start a new attempt" in message
    assert run.state.section("finetune")["status"] == "failed"

    done = tunekit.finetune(run)
    jobs = [body for _, _, _, body in cluster.applied() if body["kind"] == "Job"]
    first, second = (j["metadata"]["name"] for j in jobs)
    assert second != first and second.endswith("-2") and done["job"] == second
    args = [j["spec"]["template"]["spec"]["containers"][0]["args"] for j in jobs]
    assert args[0] == args[1] and "--resume" in args[1]  # the same checkpoints folder
    assert jobs[1]["spec"]["activeDeadlineSeconds"] == 24 * 3600
    assert (done["status"], done["attempt"], done["mlflow_run_id"]) == ("finished", 2, "abc123")
    assert "step 20/500" in capsys.readouterr().out
    log = Path(run.state.section("finetune")["log"])
    assert "step 10/500 loss 1.2" in log.read_text()

    again = tunekit.finetune(run)  # finished: reused, nothing applied
    assert again["reused"] and len([b for *_, b in cluster.applied() if b["kind"] == "Job"]) == 2


class TrainerController:
    """Plays Kubeflow Trainer and JobSet for the fake API: an applied TrainJob gets its
    JobSet's Job `<name>-node-0` (JobSet's `<jobset>-<replicated job>-<index>`), labelled as
    the runtime patch's job template says, with one pod per node (an Indexed Job's pods carry
    their completion index); node 0's pod prints the training, the others nothing; the Job
    completes once its log is read."""

    def __init__(self, api: FakeKubeAPI):
        self.api, self.jobs = api, []
        api.on_apply = self.applied
        api.after_logs = self.finished

    def applied(self, obj: dict[str, Any]) -> None:
        if obj["kind"] != "TrainJob":
            return
        name = obj["metadata"]["name"]
        [node] = obj["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"][
            "replicatedJobs"
        ]
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": f"{name}-node-0", "namespace": NS,
                            "labels": node["template"]["metadata"]["labels"]}}  # fmt: skip
        self.jobs.append(job)
        self.api.put(job)
        for index in range(obj["spec"]["trainer"]["numNodes"]):
            pod = f"{name}-node-0-{index}-x1y2z"
            labels = {"batch.kubernetes.io/job-name": f"{name}-node-0",
                      "batch.kubernetes.io/job-completion-index": str(index)}  # fmt: skip
            meta = {"name": pod, "namespace": NS, "labels": labels}
            self.api.put({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                          "status": {"phase": "Running"}})  # fmt: skip
            self.api.logs[pod] = TRAINING_LOG if index == 0 else ""

    def finished(self, pod: str) -> None:
        done = {"type": "Complete", "status": "True", "reason": "Completed", "message": "fake"}
        self.api.put({**self.jobs[-1], "status": {"conditions": [done]}})


def test_a_trainjob_is_followed_through_its_first_nodes_pod(cluster, tmp_path, capsys):
    """Two nodes of four GPUs: stage 03 applies a TrainJob, finds the Job its JobSet runs the
    nodes in, streams node 0's pod (the main process prints there) until the Job completes,
    and a re-run finds the finished attempt by its labels."""
    TrainerController(cluster)
    run = _run(tmp_path, gpu_count=4, gpu_machine_type="g2-standard-48", num_nodes=2)
    done = tunekit.finetune(run)
    applied = [body for _, _, _, body in cluster.applied()]
    assert [b["kind"] for b in applied if b["kind"] in ("Job", "TrainJob")] == ["TrainJob"]
    assert (done["status"], done["attempt"], done["mlflow_run_id"]) == ("finished", 1, "abc123")
    assert done["job"] == run.settings.finetune_job + "-1"
    assert "step 20/500" in capsys.readouterr().out
    again = tunekit.finetune(run)  # the finished attempt, found by its Job's labels
    assert again["reused"] and again["attempt"] == 1
    assert len([b for *_, b in cluster.applied() if b["kind"] == "TrainJob"]) == 1


def test_a_pod_that_finds_no_node_fails_the_stage_and_never_looks_running(
    cluster, tmp_path, capsys
):
    """Item 5. A pod larger than its node (or without GPU quota) stays Pending: the stage says
    so, and after `schedule_timeout_s` stops with the scheduler's reason."""
    why = "0/3 nodes are available: 1 Insufficient memory, 2 node(s) didn't match selector."
    JobController(cluster, [{"phase": "Pending", "why": why, "outcome": "Failed",
                             "event": "FailedScheduling"}])  # fmt: skip
    run = _run(tmp_path, schedule_timeout_s=1)
    with pytest.raises(RuntimeError, match=r"found no node for 1 s .*Insufficient memory"):
        tunekit.finetune(run)
    said = capsys.readouterr().out
    assert ": pending" in said and ": running" not in said
    assert run.state.section("finetune")["status"] == "failed"


# --- every stage that talks to MLflow logs in itself, from the cluster's Secret


def test_a_fresh_process_gets_the_login_from_the_secret(cluster, platform, tmp_path):
    """Item 3. The login existed only in stage 02's kernel (os.environ); papermill starts a
    kernel per stage, so stage 04 (and 03's plots, 06's storage URI) met MLflow's basic auth
    without one. Here stage 04 runs in a new interpreter against a real MLflow with basic
    auth, its only source of the login being the (fake) cluster's Secret."""
    admin = credentials.LocalSecrets(platform.dir).get(credentials.ADMIN)
    cluster.put(workloads.secret(platform, credentials.ADMIN, admin))
    uri = platform.state.section("mlflow")["tracking_uri"]
    use_login(platform)
    experiment = MlflowClient(uri).create_experiment("gke-fresh-kernel")
    mlflow.set_tracking_uri(uri)
    best = logged_finetune(MlflowClient(uri), experiment, accuracy=0.9, eval_loss=0.1)
    for name in credentials.LOGIN_VARIABLES:
        os.environ.pop(name)
    run = _run(tmp_path, experiment_name="gke-fresh-kernel", registered_model_name="gke-fresh")
    run.state.update("mlflow", {"tracking_uri": uri, "experiment_id": experiment})
    script = "import sys, tunekit; print(tunekit.register_model(tunekit.open_run(sys.argv[1])))"
    done = subprocess.run([sys.executable, "-c", script, str(run.dir)], cwd=REPO,
                          env=child_environment({}), capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert run.state.section("registry")["run_id"] == best
    assert admin["password"] not in done.stdout + done.stderr
    assert not [p for p in run.dir.rglob("*") if p.is_file() and admin["password"] in p.read_text()]


def test_ui_reopens_only_the_port_forward(cluster, tmp_path, monkeypatch):
    """`tunekit ui` on a gke run: the MLflow UI through a new port-forward, the login from the
    Secret; no terraform apply, no image build, no Helm upgrade (stages 01-02 are not re-run)."""
    served = tmp_path / "mlflow-stand-in"
    served.mkdir()
    (served / "health").write_text("OK")  # what the port-forward's health check asks for
    path, calls = fake_tools(tmp_path / "ui-tools", {
        # the FAKE port-forward: a local HTTP server on the port the kit chose ("PORT:5000")
        "kubectl": f'port=$(echo "$*" | sed "s/.* \\([0-9]*\\):5000$/\\1/"); cd {served} && '
                   f'exec {sys.executable} -m http.server "$port" --bind 127.0.0.1',
        "terraform": "exit 1", "helm": "exit 1", "gcloud": "exit 1",
    })  # fmt: skip
    monkeypatch.setenv("PATH", path)
    run = _run(tmp_path)
    admin = credentials.new_login(credentials.ADMIN)
    cluster.put(workloads.secret(run, credentials.ADMIN, admin))
    run.state.update("mlflow", {"experiment_id": "7", "tracking_uri": "http://127.0.0.1:1"})
    proc = subprocess.Popen([sys.executable, "-m", "tunekit", "ui", "--run-dir", str(run.dir)],
                            cwd=REPO, env=child_environment({}), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=at_a_terminal)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("MLflow UI: http://127.0.0.1:") and "/#/experiments/7" in line, (
            line + proc.stdout.read() if proc.poll() is not None else line
        )
        assert proc.stdout.readline().split()[-1] == admin["password"]
        url = line.split()[2].split("/#")[0]
        assert run.state.section("mlflow")["tracking_uri"] == url  # later stages find it
        assert "Ctrl-C" in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        proc.kill()
    called = calls.read_text().splitlines()
    assert len(called) == 1 and called[0].startswith(f"kubectl port-forward -n={NS} svc/mlflow ")


# --- stage 07: no disk outlives the cluster


def test_cleanup_waits_for_the_volumes_and_reports_a_disk_left(cluster, tmp_path, capsys):
    """Deleting a namespace deletes its claims; the volumes (Persistent Disks, reclaim policy
    Delete) go after, asynchronously, and `terraform destroy` does not wait for them: a disk
    whose deletion is still running when the cluster goes is left, paid for. PostgreSQL's
    claim lives in the kit's namespace, Katib's MySQL one in `kubeflow` (katib v0.19.0
    manifests/v1beta1/components/mysql/pvc.yaml: katib-mysql, 10Gi). Here the FAKE kubectl
    deletes nothing: PostgreSQL's volume is already gone, Katib's stays."""
    handle = "projects/p1/zones/us-central1-b/disks/pvc-katib"
    for namespace, claim, volume in ((NS, "data-postgres-0", "pv-postgres"),
                                     ("kubeflow", "katib-mysql", "pv-katib")):  # fmt: skip
        cluster.put({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                     "metadata": {"name": claim, "namespace": namespace},
                     "spec": {"volumeName": volume}})  # fmt: skip
    cluster.put(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "pv-katib"},
            "spec": {"csi": {"driver": "pd.csi.storage.gke.io", "volumeHandle": handle}},
        }
    )
    run = _run(tmp_path)
    result = tunekit.cleanup(run)
    assert result["volumes_deleted"] == ["pv-postgres"]
    assert result["disks_left"] == [handle]
    said = capsys.readouterr().out
    assert "gcloud compute disks delete pvc-katib --zone=us-central1-b --project=p1" in said
    script = (run.dir / "gke" / "commands.sh").read_text()
    kit, katib = (script.index(f"kubectl delete namespace {ns} ") for ns in (NS, "kubeflow"))
    wait = script.index("kubectl wait --for=delete pv/pv-katib pv/pv-postgres")
    assert kit < katib < wait < script.index("terraform -chdir=")


# --- stage 06: one KServe release


def test_a_cluster_with_another_kserve_release_is_refused_before_anything_changes(
    cluster, tmp_path
):
    """KServe v0.15.2's configmap.go refuses a defaultDeploymentMode other than Serverless,
    RawDeployment or ModelMesh (its webhook, its controller, its start): setting the kit's
    `Standard` there would break every InferenceService. A cluster's own KServe of another
    release is named and refused; nothing is patched or applied."""

    cluster.put({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                 "metadata": {"name": "certificates.cert-manager.io"}})  # fmt: skip
    cluster.put({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                 "metadata": {"name": "inferenceservices.serving.kserve.io"}})  # fmt: skip
    manager = {"name": "manager", "image": "kserve/kserve-controller:v0.15.2"}
    controller = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "kserve-controller-manager", "namespace": "kserve"},
                  "spec": {"template": {"spec": {"containers": [manager]}}}}  # fmt: skip
    cluster.put(controller)
    run = _run(tmp_path)
    sh = Shell(run, "06-deploy-kserve")
    with pytest.raises(
        RuntimeError, match=rf"runs KServe v0.15.2 .*renders for {addons.KSERVE_VERSION}"
    ):
        addons.ensure_kserve(sh)
    assert "kubectl patch" not in sh.script.read_text() and cluster.applied() == []
    controller["spec"]["template"]["spec"]["containers"][0]["image"] = (
        f"kserve/kserve-controller:{addons.KSERVE_VERSION}"
    )
    cluster.put(controller)
    addons.ensure_kserve(sh)  # the same release: kept, its mode set
    assert "defaultDeploymentMode" in sh.script.read_text()
