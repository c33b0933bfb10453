"""Profile `gke`: Google Kubernetes Engine with GPUs, driven by terraform, gcloud, kubectl, helm.

Each stage renders what it applies from the settings (`tunekit.workloads`), writes it into
`<run>/gke/` and runs the commands through `tunekit.cloud.Shell`. With `-p dry_run=true` the
whole series runs offline: commands are printed and recorded, nothing is executed.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from typing import Any

from tunekit import finetune_job, workloads
from tunekit.cloud import PROJECT_ROOT, Shell
from tunekit.run import Run
from tunekit.services import ServiceSpec, ensure_service, running_services, stop_all
from tunekit.tracking import artifacts_destination

TF_DIR = PROJECT_ROOT / "terraform"
DRY = "dry-run"  # what a dry run records where a real run records a live value


def terraform_variables(run: Run) -> dict[str, Any]:
    """The variables tunekit sets in terraform/ (each must be declared in variables.tf)."""
    s = run.settings
    return {
        "project_id": s.project_id,
        "region": s.region,
        "cluster_name": s.cluster_name,
        "bucket": s.bucket,
        "namespace": s.namespace,
        "gpu_type": s.gpu_type,
        "gpu_count": s.gpu_count,
        "gpu_machine_type": s.gpu_machine_type,
        "gpu_spot": s.gpu_spot,
    }


def _planned_outputs(run: Run) -> dict[str, Any]:
    """What `terraform output -json` gives, known from the variables (for a dry run)."""
    s = run.settings
    return {
        "cluster_name": s.cluster_name,
        "location": s.region,
        "bucket": s.bucket,
        "registry": f"{s.region}-docker.pkg.dev/{s.project_id}/tunekit",
        "build_service_account": f"{s.cluster_name}-build@{s.project_id}.iam.gserviceaccount.com",
    }


def create_cluster(run: Run) -> dict[str, Any]:
    """terraform apply; cluster credentials; GPU nodes; the namespace and service accounts."""
    sh, s = Shell(run, "01-cluster"), run.settings
    var_file = sh.folder / "terraform.tfvars.json"
    var_file.write_text(json.dumps(terraform_variables(run), indent=2))
    tf = ["terraform", f"-chdir={TF_DIR}"]
    sh.run([*tf, "init", "-input=false"])
    sh.run([*tf, "apply", "-input=false", "-auto-approve", f"-var-file={var_file}"])
    raw = sh.output([*tf, "output", "-json"])
    outputs = {k: v["value"] for k, v in json.loads(raw).items()} if raw else _planned_outputs(run)
    sh.run(
        [
            "gcloud",
            "container",
            "clusters",
            "get-credentials",
            s.cluster_name,
            f"--region={s.region}",
            f"--project={s.project_id}",
        ]
    )
    nodes = sh.output(
        [
            "kubectl",
            "get",
            "nodes",
            "-o",
            "json",
            f"-l=cloud.google.com/gke-accelerator={s.gpu_type}",
        ]
    )
    gpus = sum(
        int(n["status"].get("allocatable", {}).get("nvidia.com/gpu", 0))
        for n in (json.loads(nodes)["items"] if nodes else [])
    )
    if gpus:
        print(f"{gpus} {s.gpu_type} GPU(s) ready")
    elif not s.dry_run:
        print(f"no {s.gpu_type} node up yet: the GPU pool scales up when the fine-tune starts")
    sh.apply("manifests/01-namespace.yaml", workloads.namespace(run))
    return run.state.update(
        "cluster",
        {
            "profile": "gke",
            "dry_run": s.dry_run,
            "cluster": outputs["cluster_name"],
            "bucket": outputs["bucket"],
            "bucket_url": f"gs://{outputs['bucket']}",
            "registry": outputs["registry"],
            "build_service_account": outputs["build_service_account"],
            "gpus_ready": gpus if not s.dry_run else DRY,
            "endpoints": {},
            "commands": str(sh.script),
        },
    )


def start_mlflow(run: Run) -> dict[str, Any]:
    """PostgreSQL and MLflow (Helm) with basic auth; locally, a port-forward to its UI and API."""
    sh, s = Shell(run, "02-mlflow"), run.settings
    for name, user in (
        (workloads.MLFLOW_DB_SECRET, "mlflow"),
        (workloads.MLFLOW_AUTH_SECRET, "admin"),
    ):
        if s.dry_run or not _exists(sh, run, "secret", name):
            data = {"username": user, "password": secrets.token_urlsafe(24)}
            sh.apply_secret(f"manifests/02-secret-{name}.yaml", workloads.secret(run, name, data))
    sh.apply("manifests/02-postgres.yaml", workloads.postgres(run))
    sh.run(
        [
            "kubectl",
            "rollout",
            "status",
            "statefulset/postgres",
            f"-n={s.namespace}",
            "--timeout=10m",
        ]
    )
    values = sh.write("helm/mlflow-values.yaml", workloads.mlflow_values(run))
    chart, version = workloads.MLFLOW_CHART
    sh.run(
        [
            "helm",
            "repo",
            "add",
            "community-charts",
            "https://community-charts.github.io/helm-charts",
            "--force-update",
        ]
    )
    sh.run(
        [
            "helm",
            "upgrade",
            "--install",
            "mlflow",
            chart,
            f"--version={version}",
            f"--namespace={s.namespace}",
            f"--values={values}",
            "--wait",
            "--timeout=15m",
        ]
    )
    in_cluster = workloads.in_cluster_tracking_uri(run)
    record = {
        "in_cluster_uri": in_cluster,
        "experiment_name": s.experiment_name,
        "artifacts_destination": artifacts_destination(run),
        "helm_values": str(values),
    }
    if s.dry_run:
        url = f"http://127.0.0.1:{workloads.MLFLOW_PORT}  # kubectl port-forward svc/mlflow"
        return run.state.update(
            "mlflow", {**record, "tracking_uri": in_cluster, "ui_url": url, "experiment_id": DRY}
        )
    _mlflow_credentials(sh, run)
    forward = _port_forward(run, "mlflow", "svc/mlflow", workloads.MLFLOW_PORT, "/health")
    from tunekit.tracking import ensure_experiment

    experiment_id = ensure_experiment(forward["url"], s.experiment_name)
    return run.state.update(
        "mlflow",
        {
            **record,
            "tracking_uri": forward["url"],
            "experiment_id": experiment_id,
            "ui_url": f"{forward['url']}/#/experiments/{experiment_id}",
        },
    )


def finetune(run: Run) -> dict[str, Any]:
    """Build the images (Cloud Build), then run `tunekit.train` as a Job and stream its logs."""
    sh, s = Shell(run, "03-finetune"), run.settings
    _build_images(sh, run)
    token = os.environ.get("HF_TOKEN", "")
    if token or s.dry_run:
        secret = workloads.secret(run, workloads.HF_SECRET, {"HF_TOKEN": token})
        sh.apply_secret("manifests/03-secret-hf-token.yaml", secret)
    else:
        print("HF_TOKEN is not set: gated models such as google/gemma-2-9b cannot be downloaded")
    job = finetune_job.job_dir(run).name
    config = finetune_job.config_yaml(run)
    objects = workloads.finetune_job(run, job, workloads.in_cluster_tracking_uri(run), config)
    sh.apply("manifests/03-finetune-job.yaml", objects)
    ns = f"-n={s.namespace}"
    sh.stream(["kubectl", "logs", "-f", f"job/{job}", ns, "--pod-running-timeout=30m"])
    sh.run(["kubectl", "wait", f"job/{job}", ns, "--for=condition=complete", "--timeout=24h"])
    result_uri = f"gs://{s.bucket}/{workloads.bucket_folder(run)}/finetune/{job}/result.json"
    raw = sh.output(["gcloud", "storage", "cat", result_uri])
    dry = {"mlflow_run_id": DRY, "model_uri": DRY, "steps": 0, "eval_loss": None}
    result = json.loads(raw) if raw else dry
    return run.state.update(
        "finetune",
        {
            **result,
            "status": DRY if s.dry_run else "finished",
            "job": job,
            "job_uri": result_uri.rsplit("/", 1)[0],
            "reused": False,
        },
    )


def deploy_simple(run: Run) -> dict[str, Any]:
    """The FastAPI Deployment and Service on the champion; a port-forward to ask it."""
    from tunekit.serving import champion_uri, champion_version

    sh, s = Shell(run, "05-deploy-simple"), run.settings
    version = champion_version(run)
    objects = workloads.serve_deployment(
        run, champion_uri(run), version, workloads.in_cluster_tracking_uri(run)
    )
    sh.apply("manifests/05-serve.yaml", objects)
    sh.run(
        [
            "kubectl",
            "rollout",
            "status",
            "deployment/tunekit-serve",
            f"-n={s.namespace}",
            "--timeout=20m",
        ]
    )
    in_cluster = f"http://tunekit-serve.{s.namespace}.svc.cluster.local"
    url = (
        in_cluster
        if s.dry_run
        else _port_forward(run, "fastapi", "svc/tunekit-serve", 80, "/readyz")["url"]
    )
    return run.state.update(
        "serving",
        {
            "fastapi": {
                "url": url,
                "in_cluster_url": in_cluster,
                "docs": f"{url}/docs",
                "model_uri": champion_uri(run),
                "model_version": version,
            }
        },
    )


def deploy_kserve(run: Run) -> dict[str, Any]:
    """The kit's MLServer runtime and InferenceService (V2); with a Hub base model also the
    vLLM InferenceService with the LoRA adapter (OpenAI API). Waits until they are ready."""
    from tunekit.serving import champion_uri, champion_version

    sh, s = Shell(run, "06-deploy-kserve"), run.settings
    name, version = s.registered_model_name, champion_version(run)
    _ensure_kserve(sh, run)
    storage_uri = _storage_uri(run, version)
    tracking = workloads.in_cluster_tracking_uri(run)
    services = [workloads.mlserver_inference_service(run, storage_uri)]
    if workloads.vllm_serves(run):
        services.append(workloads.vllm_inference_service(run, storage_uri))
    sh.apply(
        "manifests/06-kserve.yaml", [workloads.mlserver_runtime(run, tracking, version), *services]
    )
    for isvc in services:
        sh.run(
            [
                "kubectl",
                "wait",
                f"inferenceservice/{isvc['metadata']['name']}",
                f"-n={s.namespace}",
                "--for=condition=Ready",
                "--timeout=30m",
            ]
        )
    in_cluster = f"http://{name}-predictor.{s.namespace}.svc.cluster.local"
    url = (
        in_cluster
        if s.dry_run
        else _port_forward(
            run, "mlserver", f"svc/{name}-predictor", 80, f"/v2/models/{name}/ready"
        )["url"]
    )
    record = {
        "mlserver": {
            "url": url,
            "in_cluster_url": in_cluster,
            "infer_url": f"{url}/v2/models/{name}/infer",
            "storage_uri": storage_uri,
            "model_uri": champion_uri(run),
            "model_version": version,
        }
    }
    if len(services) > 1:
        vllm = services[1]["metadata"]["name"]
        record["vllm"] = {
            "openai_url": f"http://{vllm}-predictor.{s.namespace}.svc.cluster.local"
            "/openai/v1/completions",
            "model": f"{name}-lora",
        }
    return run.state.update("serving", record)


def cleanup(run: Run) -> dict[str, Any]:
    """Delete the workloads, MLflow and PostgreSQL, the namespace; then terraform destroy."""
    sh, s = Shell(run, "07-cleanup"), run.settings
    stopped = stop_all(run)  # the local port-forwards
    folder = sh.folder / "manifests"
    for path in sorted(folder.glob("0[3-6]-*.yaml"), reverse=True):
        sh.run(
            ["kubectl", "delete", "-f", str(path), "--ignore-not-found", "--wait=false"],
            check=False,
        )
    sh.run(
        ["helm", "uninstall", "mlflow", f"--namespace={s.namespace}", "--ignore-not-found"],
        check=False,
    )
    sh.run(["kubectl", "delete", "namespace", s.namespace, "--ignore-not-found"], check=False)
    var_file = sh.folder / "terraform.tfvars.json"
    sh.run(
        [
            "terraform",
            f"-chdir={TF_DIR}",
            "destroy",
            "-input=false",
            "-auto-approve",
            f"-var-file={var_file}",
        ]
    )
    return run.state.update(
        "cleanup",
        {
            "stopped": stopped,
            "still_running": sorted(running_services(run)),
            "destroyed": DRY if s.dry_run else True,
            "commands": str(sh.script),
        },
    )


def _exists(sh: Shell, run: Run, kind: str, name: str) -> bool:
    done = sh.run(
        ["kubectl", "get", kind, name, f"-n={run.settings.namespace}"], capture=True, check=False
    )
    return bool(done and done.returncode == 0)


def _mlflow_credentials(sh: Shell, run: Run) -> None:
    """MLflow's admin login from its Secret into this process's environment (never shown)."""
    for variable, key in (
        ("MLFLOW_TRACKING_USERNAME", "username"),
        ("MLFLOW_TRACKING_PASSWORD", "password"),
    ):
        encoded = sh.output(
            [
                "kubectl",
                "get",
                "secret",
                workloads.MLFLOW_AUTH_SECRET,
                f"-n={run.settings.namespace}",
                f"-o=jsonpath={{.data.{key}}}",
            ]
        )
        os.environ[variable] = base64.b64decode(encoded).decode()


def _port_forward(run: Run, name: str, target: str, port: int, health: str) -> dict[str, Any]:
    """`kubectl port-forward` as a local service of the run (07 stops it)."""
    command = [
        "kubectl",
        "port-forward",
        f"-n={run.settings.namespace}",
        target,
        f"{{port}}:{port}",
    ]
    return ensure_service(run, ServiceSpec(f"port-forward-{name}", command, health))


def _build_images(sh: Shell, run: Run) -> None:
    """Cloud Build builds and pushes the kit's images tagged with `image_tag` (once per tag)."""
    from tunekit.experiment import git_commit

    s = run.settings
    probe = workloads.image(run, "finetune")
    if not s.dry_run:
        done = sh.run(
            [
                "gcloud",
                "artifacts",
                "docker",
                "images",
                "describe",
                probe,
                f"--project={s.project_id}",
            ],
            capture=True,
            check=False,
        )
        if done and done.returncode == 0:
            print(f"images {s.image_tag} are built already")
            return
    planned = _planned_outputs(run)
    account = run.state.section("cluster").get(
        "build_service_account", planned["build_service_account"]
    )
    sh.run(
        [
            "gcloud",
            "builds",
            "submit",
            str(PROJECT_ROOT),
            f"--config={PROJECT_ROOT / 'cloudbuild.yaml'}",
            f"--project={s.project_id}",
            f"--region={s.region}",
            f"--service-account=projects/{s.project_id}/serviceAccounts/{account}",
            f"--gcs-source-staging-dir=gs://{s.bucket}/cloudbuild/source",
            f"--substitutions=_REGISTRY={planned['registry']},_TAG={s.image_tag},"
            f"_GIT_COMMIT={git_commit()}",
        ]
    )


def _ensure_kserve(sh: Shell, run: Run) -> None:
    """Install cert-manager and KServe (RawDeployment) unless the cluster has KServe."""
    if not run.settings.dry_run and _exists(sh, run, "crd", "inferenceservices.serving.kserve.io"):
        return
    releases = "https://github.com/{}/releases/download/{}/{}"
    cert_manager = releases.format(
        "cert-manager/cert-manager", workloads.CERT_MANAGER_VERSION, "cert-manager.yaml"
    )
    sh.run(["kubectl", "apply", "-f", cert_manager])
    sh.run(["kubectl", "wait", "deployment", "--all", "-n=cert-manager",
            "--for=condition=Available", "--timeout=5m"])  # fmt: skip
    for manifest in ("kserve.yaml", "kserve-cluster-resources.yaml"):
        url = releases.format("kserve/kserve", workloads.KSERVE_VERSION, manifest)
        sh.run(["kubectl", "apply", "--server-side", "-f", url])
        if manifest == "kserve.yaml":
            sh.run(["kubectl", "wait", "deployment/kserve-controller-manager", "-n=kserve",
                    "--for=condition=Available", "--timeout=10m"])  # fmt: skip
    raw = json.dumps({"data": {"deploy": json.dumps({"defaultDeploymentMode": "RawDeployment"})}})
    sh.run(["kubectl", "patch", "configmap/inferenceservice-config", "-n=kserve",
            "--type=merge", f"-p={raw}"])  # fmt: skip


def _storage_uri(run: Run, version: str) -> str:
    """The gs:// folder of the registered version's model (MLflow serves artifacts by proxy)."""
    if run.settings.dry_run:
        return f"{artifacts_destination(run)}/{DRY}/{run.settings.registered_model_name}"
    import mlflow

    from tunekit.tracking import tracking_uri

    client = mlflow.MlflowClient(tracking_uri(run))
    source = client.get_model_version_download_uri(run.settings.registered_model_name, version)
    path = source.split("mlflow-artifacts:", 1)[-1].lstrip("/")
    return f"{artifacts_destination(run)}/{path}"
