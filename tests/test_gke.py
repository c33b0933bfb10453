"""Profile gke, offline: the dry-run series, what it renders, terraform and the policy scan.

No cloud is reached: a dry run only prints and records commands. The real commands cannot run
here (no GKE API, no Helm, no Docker), so what they would apply is checked instead: Kubernetes
and KServe schemas, checkov, `terraform fmt`, and the variables the kit sets against terraform/.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import hcl2
import pytest
import yaml

import tunekit
from tunekit.backends import containers
from tunekit.backends.gke import workloads
from tunekit.backends.gke.shell import CommandError
from tunekit.backends.gke.terraform import planned_outputs, terraform_variables
from tunekit.settings import SettingsError

from .conftest import GKE_SECRET, REPO, fake_tools, rendered, rendered_one, tunekit_cli
from .schemas import validate

SECRET = GKE_SECRET
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"


def test_dry_run_records_every_stage_command_in_order(dry_run):
    script = (dry_run.dir / "gke" / "commands.sh").read_text()
    expected = [
        "terraform -chdir=",
        " apply -input=false -auto-approve -var-file=",
        "gcloud container clusters get-credentials tunekit --region=us-central1",
        "kubectl apply --server-side --field-manager=tunekit -f "
        + str(dry_run.dir / "gke/manifests/01-namespace.yaml"),
        "gcloud builds submit",
        "_TAG=" + dry_run.settings.image_tag,
        "helm upgrade --install mlflow community-charts/mlflow --version=",
        "03-finetune-job.yaml",
        "# kubectl logs -f job/ft-",
        "kubectl rollout status deployment/tunekit-serve",
        "kubectl rollout status deployment/gemma2-text-to-sql-predictor ",
        "helm uninstall mlflow",
        "terraform -chdir=" + str(REPO / "terraform") + " destroy",
    ]
    positions = [script.find(e) for e in expected]
    assert -1 not in positions, [e for e, p in zip(expected, positions, strict=True) if p < 0]
    assert positions == sorted(positions)
    assert script.count("dry run: printed, not executed") == 6  # 04 runs no command


def test_dry_run_records_state_that_later_stages_use(dry_run):
    state = dry_run.state.read()
    assert state["cluster"]["registry"] == "us-central1-docker.pkg.dev/demo-project/tunekit"
    assert state["mlflow"]["tracking_uri"] == "http://mlflow.tunekit.svc.cluster.local:5000"
    assert state["finetune"]["status"] == "dry-run"
    assert state["registry"]["model_uri"] == "models:/gemma2-text-to-sql@champion"
    assert state["serving"]["vllm"]["model"] == "gemma2-text-to-sql-lora"
    assert state["cleanup"]["destroyed"] == "dry-run"
    variables = json.loads((dry_run.dir / "gke" / "terraform.tfvars.json").read_text())
    assert variables == terraform_variables(dry_run)
    assert variables["bucket"] == "demo-project-tunekit"


def test_no_secret_reaches_a_file_of_the_run(dry_run):
    hits = [p for p in dry_run.dir.rglob("*") if p.is_file() and SECRET in p.read_text()]
    assert not hits
    secret = rendered_one(dry_run, "Secret", workloads.HF_SECRET)
    assert secret["stringData"] == {"HF_TOKEN": "<set at apply time; never written>"}
    passwords = [rendered_one(dry_run, "Secret", n)["stringData"]["password"]
                 for n in (workloads.MLFLOW_AUTH_SECRET, workloads.MLFLOW_DB_SECRET,
                           workloads.MLFLOW_READER_SECRET)]  # fmt: skip
    assert set(passwords) == {"<set at apply time; never written>"}


def test_every_rendered_object_validates_against_its_schema(dry_run):
    objects = rendered(dry_run)
    kinds = {o["kind"] for o in objects}
    assert {"Job", "Deployment", "Service", "StatefulSet", "InferenceService",
            "ServingRuntime", "Secret", "ConfigMap", "NetworkPolicy"} <= kinds  # fmt: skip
    for obj in objects:
        validate(obj, workloads.K8S_VERSION)


@pytest.mark.parametrize(
    ("kind", "path", "bad"),
    [
        ("Job", ["spec", "backoffLimit"], "four"),
        ("Deployment", ["spec", "template", "spec", "containers", 0, "readinessProbe"], {"x": 1}),
        ("InferenceService", ["spec", "predictor", "model", "storageUrl"], "gs://b/m"),
        ("ServingRuntime", ["spec", "protocolVersions"], "v2"),
    ],
)
def test_schema_validation_catches_a_broken_object(dry_run, kind, path, bad):
    obj = rendered_one(dry_run, kind)
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    with pytest.raises(ValueError, match=str(path[-1])):
        validate(obj, workloads.K8S_VERSION)


def test_the_finetune_job_is_what_a_gpu_cluster_needs(dry_run):
    s = dry_run.settings
    job = rendered_one(dry_run, "Job")
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "tunekit.train"]
    assert container["image"].endswith(f"/finetune:{s.image_tag}")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(s.gpu_count)
    assert pod["nodeSelector"]["cloud.google.com/gke-accelerator"] == s.gpu_type
    assert {t["key"] for t in pod["tolerations"]} >= {"nvidia.com/gpu"}
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
    hf = next(e for e in container["env"] if e["name"] == "HF_TOKEN")
    assert hf["valueFrom"]["secretKeyRef"]["name"] == workloads.HF_SECRET
    assert pod["serviceAccountName"] == workloads.TRAIN_SA
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["ttlSecondsAfterFinished"] > 0
    assert "--resume" in container["args"]  # a retried pod continues from its checkpoint
    assert job["spec"]["activeDeadlineSeconds"] == 24 * 3600  # job_deadline_h
    config = rendered_one(dry_run, "ConfigMap", "-config")["data"]["config.yaml"]
    assert yaml.safe_load(config)["model_id"] == "google/gemma-2-9b"
    # one GPU on one node: a plain Job, no Kubeflow Trainer (tests/test_distributed.py: more)
    assert not [o for o in rendered(dry_run) if o["kind"] == "TrainJob"]
    assert "kubeflow/trainer" not in (dry_run.dir / "gke" / "commands.sh").read_text()


def test_servers_probe_health_and_serve_the_champion(dry_run):
    deployment = rendered_one(dry_run, "Deployment", "tunekit-serve")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "models:/gemma2-text-to-sql@champion" in container["args"]
    mlserver = rendered_one(dry_run, "InferenceService", "gemma2-text-to-sql")
    model = mlserver["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2" and model["runtime"] == "tunekit-mlserver"
    assert model["storageUri"].startswith(f"gs://{dry_run.settings.bucket}/mlflow/")
    vllm = rendered_one(dry_run, "InferenceService", "-vllm")["spec"]["predictor"]["model"]
    assert "--enable-lora" in vllm["args"] and "--model_id=google/gemma-2-9b" in vllm["args"]


def test_mlflow_values_proxy_artifacts_use_postgres_and_auth(dry_run):
    values = yaml.safe_load((dry_run.dir / "gke" / "helm" / "mlflow-values.yaml").read_text())
    assert values["artifactRoot"]["proxiedArtifactStorage"] is True
    assert values["artifactRoot"]["gcs"]["bucket"] == dry_run.settings.bucket
    assert values["backendStore"]["postgres"]["enabled"] is True
    assert values["backendStore"]["existingDatabaseSecret"]["name"] == workloads.MLFLOW_DB_SECRET
    assert values["auth"]["existingAdminSecret"]["name"] == workloads.MLFLOW_AUTH_SECRET
    allowed = values["extraArgs"]["allowedHosts"].split(",")
    assert "mlflow.tunekit.svc.cluster.local:*" in allowed and "localhost:*" in allowed
    assert "bitnami" not in json.dumps(values).lower()


def test_local_processes_and_pods_run_the_same_containers(run):
    """One typed container each: the Job's pod and the local process take command, args and
    env from it; only the places differ (mounted volumes, the port, the address)."""
    train = containers.finetune(run, "ft-x", "http://tracking:5000")
    process = train.process(
        {containers.CONFIG: "/local/job", containers.WORKSPACE: "/local/run"},
        secrets=lambda secret, key: f"{secret}/{key}" if secret == "mlflow-auth" else None,
    )
    assert process.argv == [sys.executable, "-m", "tunekit.train", "--config",
                            "/local/job/config.yaml", "--output-dir", "/local/run/finetune/ft-x",
                            "--models-dir", "/local/run/models", "--resume"]  # fmt: skip
    assert process.env["MLFLOW_TRACKING_URI"] == "http://tracking:5000"
    assert process.env["MLFLOW_TRACKING_USERNAME"] == "mlflow-auth/username"
    assert "HF_TOKEN" not in process.env  # a Secret the run has not: left to the environment
    (job,) = [o for o in workloads.finetune_objects(run, "ft-x", "http://tracking:5000", "a: 1\n")
              if o["kind"] == "Job"]  # fmt: skip
    pod = job["spec"]["template"]["spec"]["containers"][0]
    assert pod["command"] == ["python", "-m", "tunekit.train"]
    assert pod["args"] == ["--config", "/etc/tunekit/config.yaml", "--output-dir",
                           "/workspace/finetune/ft-x", "--models-dir", "/workspace/models",
                           "--resume"]  # fmt: skip
    mounted = {m["name"]: m["mountPath"] for m in pod["volumeMounts"]}
    assert mounted["config"] == "/etc/tunekit" and mounted["workspace"] == "/workspace"
    env = {e["name"]: e for e in pod["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == process.env["MLFLOW_TRACKING_URI"]
    assert env["MLFLOW_TRACKING_USERNAME"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-auth"

    serve = containers.serve(run, "models:/m@champion", "3", "http://t")
    server = serve.process({containers.WORKSPACE: "/local/run"}, secrets=lambda s, k: None)
    assert server.argv[-4:] == ["--host", "127.0.0.1", "--port", "{port}"]
    assert server.health_path == "/readyz" and server.env["TUNEKIT_SERVED_VERSION"] == "3"
    deployment = workloads.serve_deployment(run, "models:/m@champion", "3", "http://t")[0]
    pod = deployment["spec"]["template"]["spec"]["containers"][0]
    assert pod["args"][-4:] == ["--host", "0.0.0.0", "--port", "8080"]
    assert pod["ports"] == [{"name": "http", "containerPort": 8080}]


def test_a_container_refuses_a_path_in_a_volume_it_does_not_mount(run):
    """A value in a volume the container does not declare would silently be wrong in one of
    the two places: it is an error in both."""
    bad = containers.Container("x", "serve", ("python", containers.InMount("config", "c")))
    with pytest.raises(ValueError, match="does not mount volume 'config'"):
        bad.in_pod(bad.command[1])
    with pytest.raises(ValueError, match="does not mount volume 'config'"):
        bad.process({}, secrets=lambda secret, key: None)


def test_tiny_model_gets_no_vllm_service(tmp_path):
    run = tunekit.start_run(
        tmp_path / "r", profile="gke", dry_run=True, project_id="p1", model_id="tiny-gemma2"
    )
    assert not workloads.vllm_serves(run)


def test_terraform_declares_every_variable_and_output_the_kit_uses(dry_run):
    declared, outputs = {}, set()
    for path in (REPO / "terraform").glob("*.tf"):
        parsed = hcl2.loads(path.read_text())  # block labels keep their quotes
        for block in parsed.get("variable", []):
            declared |= {name.strip('"'): body["type"] for name, body in block.items()}
        outputs |= {name.strip('"') for block in parsed.get("output", []) for name in block}
    hcl_type = {str: "string", int: "number", bool: "bool"}

    def typed(value: object) -> str:  # python-hcl2 writes `list(string)` as `${list(string)}`
        if isinstance(value, list):
            return f"${{list({typed(value[0]).strip('${}')})}}"
        return hcl_type[type(value)]

    for name, value in terraform_variables(dry_run).items():
        assert declared.get(name) == typed(value), f"variable {name}"
    assert set(planned_outputs(dry_run)) <= outputs


def test_terraform_is_formatted():
    terraform = shutil.which("terraform")
    if not terraform:
        pytest.skip("terraform is not installed")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(REPO / "terraform")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def _checkov(directory: Path, framework: str, skips: list[str]) -> dict:
    if not CHECKOV.is_file():
        pytest.fail(f"{CHECKOV} is missing: `make install` creates it")
    command = [str(CHECKOV), "-d", str(directory), "--framework", framework, "--skip-download",
               "-o", "json"]  # fmt: skip
    if skips:
        command += ["--skip-check", ",".join(skips)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_finds_no_failure_in_terraform():
    report = _checkov(REPO / "terraform", "terraform", [])
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0 and report["summary"]["passed"] > 50
    skipped = report["results"]["skipped_checks"]
    assert skipped and all(len(c["check_result"].get("suppress_comment", "")) > 20 for c in skipped)


def test_checkov_finds_no_failure_in_the_manifests(dry_run):
    skips = yaml.safe_load((REPO / "ci" / "checkov-skips.yaml").read_text())
    assert all(len(reason) > 40 for reason in skips.values())  # every skip says why
    report = _checkov(dry_run.dir / "gke" / "manifests", "kubernetes", list(skips))
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 100


def test_gke_settings_are_validated_before_anything_runs(tmp_path):
    with pytest.raises(SettingsError, match="gpu_type"):
        tunekit.start_run(tmp_path / "r", profile="gke", project_id="p", gpu_type="tesla")
    with pytest.raises(SettingsError, match="cluster_name"):
        tunekit.start_run(tmp_path / "r", profile="gke", project_id="p", cluster_name="a" * 30)
    assert not (tmp_path / "r").exists()


@pytest.mark.e2e
def test_tunekit_run_gke_dry_run_completes_offline(tmp_path):
    """The acceptance command: the whole notebook series on profile gke, as a dry run."""
    run_dir = tmp_path / "gke-run"
    result = tunekit_cli(
        "run", "--profile", "gke", "--run-dir", str(run_dir),
        "-p", "dry_run=true", "-p", "project_id=demo-project", timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    state = json.loads((run_dir / "state.json").read_text())
    assert all(s["status"] == "ok" for s in state["stages"].values())
    assert len(state["stages"]) == 7
    gke = run_dir / "gke"
    assert {p.name for p in (gke / "manifests").glob("*.yaml")} >= {
        "01-namespace.yaml", "02-postgres.yaml", "03-finetune-job.yaml", "05-serve.yaml",
        "06-kserve.yaml"}  # fmt: skip
    assert (gke / "helm" / "mlflow-values.yaml").is_file()
    assert "terraform" in (gke / "commands.sh").read_text()
    executed = (run_dir / "notebooks" / "05-deploy-simple.ipynb").read_text()
    assert "curl -s -X POST http://tunekit-serve.tunekit.svc.cluster.local/predict" in executed


def test_a_failing_cloud_command_names_itself(tmp_path, monkeypatch):
    path, _ = fake_tools(tmp_path, {"terraform": "echo 'Error: quota exceeded' >&2\nexit 1"})
    monkeypatch.setenv("PATH", path)
    run = tunekit.start_run(tmp_path / "r", profile="gke", project_id="p1")
    with pytest.raises(CommandError, match=r"init.* exit code 1\nError: quota exceeded"):
        tunekit.create_cluster(run)


def test_manifests_folder_is_the_current_rendering(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from render_manifests import render
    finally:
        sys.path.remove(str(REPO / "tools"))
    for path in render(tmp_path):
        relative = path.relative_to(tmp_path)
        committed = REPO / "manifests" / relative
        assert committed.is_file(), f"{committed} is missing"
        assert committed.read_text() == path.read_text(), (
            f"manifests/{relative} is stale: run `python tools/render_manifests.py manifests`"
        )
        # an object used twice is written twice: a reader of the file sees each probe whole
        assert not re.search(r"(^|\s)[&*]id\d+", path.read_text(), re.M), f"alias in {path.name}"


def test_the_recording_shell_answers_as_a_new_project_would(dry_run, monkeypatch):
    """The plan is data: its shell answers the commands whose output the stages read
    (terraform's outputs from the variables, no fine-tune result yet) and records PLANNED for
    values only a live platform has; a running shell answers none of that itself."""
    from tunekit.backends.gke.plan import Plan
    from tunekit.backends.gke.shell import PLANNED, Shell

    sh = Plan().shell(dry_run, "test")
    outputs = json.loads(sh.output(["terraform", "-chdir=terraform", "output", "-json"]))
    assert {k: v["value"] for k, v in outputs.items()} == planned_outputs(dry_run)
    result = json.loads(sh.output(["gcloud", "storage", "cat", "gs://b/jobs/j/result.json"]))
    assert result["mlflow_run_id"] == PLANNED and result["steps"] == 0
    assert sh.output(["gcloud", "artifacts", "docker", "images", "describe", "x"]) == ""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert (sh.live(2), sh.environ("HF_TOKEN")) == (PLANNED, PLANNED)
    assert sh.ask(lambda: 1 / 0) == PLANNED  # nothing is called
    live = Shell(dry_run, "test")
    assert (live.live(2), live.environ("HF_TOKEN"), live.ask(lambda: 3)) == (2, "", 3)
    assert sh.kube.gpus("nvidia-l4") == 0 and sh.kube.jobs("ns", "a=b") == []
