"""Profile `gke`: Google Kubernetes Engine with GPUs, driven by terraform, gcloud, helm and the
Kubernetes API.

Each stage renders what it applies from the settings (`tunekit.workloads`), writes it into
`<run>/gke/` and runs the commands through `tunekit.cloud.Shell`; objects, Secrets and the
fine-tune Job go through the Kubernetes API (`tunekit.kube`), recorded in commands.sh as the
kubectl equivalent. With `-p dry_run=true` the whole series runs offline: commands are printed
and recorded, nothing is executed.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

from tunekit import credentials, finetune_job, mlflow_chart, project_files, tracking, workloads
from tunekit.cloud import Shell
from tunekit.kube import FIELD_MANAGER, GKE_ACCELERATOR_LABEL, JobFailed, job_outcome
from tunekit.progress import TrainingProgress
from tunekit.run import Run
from tunekit.services import ServiceSpec, ensure_service, running_services, stop_all
from tunekit.tracking import artifacts_destination

DRY = "dry-run"  # what a dry run records where a real run records a live value
# The credentials stage 02 keeps in Secrets: PostgreSQL's user, MLflow's admin and reader.
MLFLOW_SECRETS = (credentials.DATABASE, credentials.ADMIN, credentials.READER)


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
    tf = ["terraform", f"-chdir={project_files.terraform_dir()}"]
    sh.run([*tf, "init", "-input=false"])
    sh.run([*tf, "apply", "-input=false", "-auto-approve", f"-var-file={var_file}"])
    raw = sh.output([*tf, "output", "-json"])
    outputs = {k: v["value"] for k, v in json.loads(raw).items()} if raw else _planned_outputs(run)
    # The control plane's DNS endpoint: reachable from anywhere, authorized by IAM; its IP
    # endpoint takes only the networks of `master_authorized_networks` (none by default).
    sh.run(["gcloud", "container", "clusters", "get-credentials", s.cluster_name,
            f"--region={s.region}", f"--project={s.project_id}", "--dns-endpoint"])  # fmt: skip
    sh.note(f"kubectl get nodes -l={GKE_ACCELERATOR_LABEL}={s.gpu_type} (the API)")
    gpus = 0 if s.dry_run else sh.kube.gpus(s.gpu_type)
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
    """PostgreSQL and MLflow (Helm) with basic auth; locally, a port-forward to its UI and API;
    the experiment and the read-only user of the model servers."""
    sh, s = Shell(run, "02-mlflow"), run.settings
    _build_images(sh, run)  # the chart runs the kit's MLflow image, its migration too
    _ensure_secrets(sh, run)
    sh.apply("manifests/02-postgres.yaml", workloads.postgres(run))
    sh.run(["kubectl", "rollout", "status", "statefulset/postgres", f"-n={s.namespace}",
            "--timeout=10m"])  # fmt: skip
    # the basic-auth users' database, on a new volume as on one an earlier run left
    in_pod = 'psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres'  # the socket: trusted
    psql = ["kubectl", "exec", "-i", f"-n={s.namespace}", "statefulset/postgres", "-c",
            "postgres", "--", "sh", "-c", in_pod]  # fmt: skip
    sql = workloads.CREATE_AUTH_DATABASE
    sh.run(psql, stdin=sql, shown=f"{shlex.join(psql)} <<'SQL'\n{sql}SQL")
    values = sh.write("helm/mlflow-values.yaml", workloads.mlflow_values(run))
    sh.run(["helm", "repo", "add", "community-charts", mlflow_chart.REPOSITORY,
            "--force-update"])  # fmt: skip
    sh.run(["helm", "upgrade", "--install", "mlflow", mlflow_chart.NAME,
            f"--version={mlflow_chart.VERSION}", f"--namespace={s.namespace}",
            f"--values={values}", "--wait", "--timeout=15m"])  # fmt: skip
    in_cluster = workloads.in_cluster_tracking_uri(run)
    record = {
        "in_cluster_uri": in_cluster,
        "experiment_name": s.experiment_name,
        "artifacts_destination": artifacts_destination(run),
        "helm_values": str(values),
        "login": {
            "username": credentials.USERNAMES[credentials.ADMIN],
            "password_in": f"Secret {s.namespace}/{credentials.ADMIN}",
        },
    }
    if s.dry_run:
        url = f"http://127.0.0.1:{workloads.MLFLOW_PORT}  # kubectl port-forward svc/mlflow"
        return run.state.update(
            "mlflow", {**record, "tracking_uri": in_cluster, "ui_url": url, "experiment_id": DRY}
        )
    forward = _port_forward(run, "mlflow", "svc/mlflow", workloads.MLFLOW_PORT, "/health")
    run.state.update("mlflow", {**record, "tracking_uri": forward["url"]})
    tracking.use_login(run)
    experiment_id = tracking.ensure_experiment(forward["url"], s.experiment_name)
    tracking.ensure_reader(
        forward["url"], read_secret(run, credentials.ADMIN), read_secret(run, credentials.READER)
    )
    ui_url = f"{forward['url']}/#/experiments/{experiment_id}"
    return run.state.update("mlflow", {"experiment_id": experiment_id, "ui_url": ui_url})


def read_secret(run: Run, name: str) -> dict[str, str]:
    """Secret `name` of the run's namespace, read through the Kubernetes API (never stored)."""
    if run.settings.dry_run:
        raise RuntimeError(f"a dry run has no cluster to read Secret {name} from")
    from tunekit.kube import Kube

    found = Kube().read_secret(run.settings.namespace, name)
    if found is None:
        raise RuntimeError(
            f"Secret {run.settings.namespace}/{name} does not exist: run stage 02-mlflow first"
        )
    return found


def _ensure_secrets(sh: Shell, run: Run) -> None:
    """Create each of MLflow's Secrets that does not exist yet, with fresh values; keep the
    ones that do (PostgreSQL keeps the password it was initialised with). Only NotFound means
    absent: any other answer of the API stops the stage before anything is written."""
    for name in MLFLOW_SECRETS:
        relative = f"manifests/02-secret-{name}.yaml"
        if run.settings.dry_run:
            sh.apply_secret(relative, workloads.secret(run, name, credentials.new_login(name)))
            continue
        if sh.kube.read_secret(run.settings.namespace, name) is None:
            sh.apply_secret(relative, workloads.secret(run, name, credentials.new_login(name)))
        else:
            sh.note(f"Secret {name} exists: kept")


def finetune(run: Run) -> dict[str, Any]:
    """Run `tunekit.train` as a Job (its image built in stage 02) and follow it.

    The Job's attempt continues where the last one stopped: a finished one is reused, a running
    or pending one is followed, after a failed one a new attempt resumes from the checkpoints
    in the bucket. A pod that finds no node for `schedule_timeout_s`, a Job that fails or runs
    past `job_deadline_h`, end the stage with the reason, the last log lines and the events.
    """
    sh, s = Shell(run, "03-finetune"), run.settings
    token = os.environ.get("HF_TOKEN", "")
    if token or s.dry_run:
        secret = workloads.secret(run, workloads.HF_SECRET, {"HF_TOKEN": token})
        sh.apply_secret("manifests/03-secret-hf-token.yaml", secret)
    else:
        print("HF_TOKEN is not set: gated models such as google/gemma-2-9b cannot be downloaded")
    folder = finetune_job.job_dir(run).name  # the fine-tune's checkpoints, in every attempt
    result_uri = f"gs://{s.bucket}/{workloads.bucket_folder(run)}/finetune/{folder}/result.json"
    name, attempt, state = _current_attempt(sh, run, folder)
    if state != "complete":
        if state is None:  # none yet, or the last one failed: a new attempt
            config = finetune_job.config_yaml(run)
            objects = workloads.finetune_job(
                run, folder, workloads.in_cluster_tracking_uri(run), config, attempt
            )
            sh.apply("manifests/03-finetune-job.yaml", objects)
        _follow(sh, run, name)
    raw = sh.output(["gcloud", "storage", "cat", result_uri])
    dry = {"mlflow_run_id": DRY, "model_uri": DRY, "steps": 0, "eval_loss": None}
    result = json.loads(raw) if raw else dry
    return run.state.update(
        "finetune",
        {
            **result,
            "status": DRY if s.dry_run else "finished",
            "job": name,
            "attempt": attempt,
            "job_uri": result_uri.rsplit("/", 1)[0],
            "reused": state == "complete",
        },
    )


def _current_attempt(sh: Shell, run: Run, folder: str) -> tuple[str, int, str | None]:
    """The Job to use for fine-tune `folder`: (name, attempt, "complete" | "active" | None),
    None meaning a new attempt is to be applied."""
    previous = [] if run.settings.dry_run else sh.kube.jobs(
        run.settings.namespace, f"{workloads.FINETUNE_LABEL}={folder}")  # fmt: skip
    attempts = {int(j.metadata.name.rsplit("-", 1)[1]): j for j in previous}
    if not attempts:
        return f"{folder}-1", 1, None
    last = max(attempts)
    outcome = job_outcome(attempts[last])
    if outcome is None:
        print(f"fine-tune Job {folder}-{last} is still running: following it")
        return f"{folder}-{last}", last, "active"
    if outcome.status == "complete":
        print(f"fine-tune Job {folder}-{last} finished already: its result is reused")
        return f"{folder}-{last}", last, "complete"
    print(f"fine-tune Job {folder}-{last} failed ({outcome.reason}): attempt {last + 1} "
          "resumes from its last checkpoint")  # fmt: skip
    return f"{folder}-{last + 1}", last + 1, None


def _follow(sh: Shell, run: Run, name: str) -> None:
    """Stream the Job's training logs (progress lines shown, all in logs/) until it ends."""
    s = run.settings
    sh.note(f"kubectl logs -f job/{name} -c train -n={s.namespace}, then the Job's condition "
            "Complete or Failed (followed through the API)")  # fmt: skip
    if s.dry_run:
        return
    log = run.logs_dir / f"finetune-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    progress = TrainingProgress(f"fine-tune {name}")

    def status(now: str) -> None:
        run.state.update("finetune", {"status": now, "job": name, "log": str(log)})
        print(f"fine-tune Job {name}: {now}", flush=True)

    with log.open("a") as out:

        def line(text: str) -> None:
            out.write(text + "\n")
            out.flush()
            if text.startswith(finetune_job.PROGRESS_PREFIXES) or text.startswith("Job "):
                progress.line(text)

        try:
            sh.kube.follow_job(s.namespace, name, "train", on_line=line, on_status=status,
                               schedule_timeout_s=s.schedule_timeout_s)  # fmt: skip
        except JobFailed as e:
            run.state.update("finetune", {"status": "failed", "job": name})
            raise RuntimeError(
                f"{e}\nRe-run stage 03 to start a new attempt that resumes from the last "
                f"checkpoint (full log: {log})"
            ) from None
        finally:
            progress.close()


def deploy_simple(run: Run) -> dict[str, Any]:
    """The FastAPI Deployment and Service on the champion; a port-forward to ask it."""
    from tunekit.serving import champion_uri, champion_version

    sh, s = Shell(run, "05-deploy-simple"), run.settings
    version = champion_version(run)
    objects = workloads.serve_deployment(
        run, champion_uri(run), version, workloads.in_cluster_tracking_uri(run)
    )
    sh.apply("manifests/05-serve.yaml", objects)
    sh.run(["kubectl", "rollout", "status", "deployment/tunekit-serve", f"-n={s.namespace}",
            "--timeout=20m"])  # fmt: skip
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
    tracking_in_cluster = workloads.in_cluster_tracking_uri(run)
    services = [workloads.mlserver_inference_service(run, storage_uri)]
    if workloads.vllm_serves(run):
        services.append(workloads.vllm_inference_service(run, storage_uri))
    runtime = workloads.mlserver_runtime(run, tracking_in_cluster, version)
    sh.apply("manifests/06-kserve.yaml", [runtime, *services])
    for isvc in services:
        sh.run(["kubectl", "wait", f"inferenceservice/{isvc['metadata']['name']}",
                f"-n={s.namespace}", "--for=condition=Ready", "--timeout=30m"])  # fmt: skip
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
    sh.run(["terraform", f"-chdir={project_files.terraform_dir()}", "destroy", "-input=false",
            "-auto-approve", f"-var-file={var_file}"])  # fmt: skip
    return run.state.update(
        "cleanup",
        {
            "stopped": stopped,
            "still_running": sorted(running_services(run)),
            "destroyed": DRY if s.dry_run else True,
            "commands": str(sh.script),
        },
    )


def _port_forward(run: Run, name: str, target: str, port: int, health: str) -> dict[str, Any]:
    """`kubectl port-forward` as a local service of the run (07 stops it)."""
    command = ["kubectl", "port-forward", f"-n={run.settings.namespace}", target,
               f"{{port}}:{port}"]  # fmt: skip
    return ensure_service(run, ServiceSpec(f"port-forward-{name}", command, health))


def _build_images(sh: Shell, run: Run) -> None:
    """Cloud Build builds and pushes the kit's images tagged with `image_tag` (once per tag)."""
    from tunekit.experiment import git_commit

    s = run.settings
    probe = workloads.image(run, "finetune")
    if not s.dry_run:
        done = sh.run(["gcloud", "artifacts", "docker", "images", "describe", probe,
                       f"--project={s.project_id}"], capture=True, check=False)  # fmt: skip
        if done and done.returncode == 0:
            print(f"images {s.image_tag} are built already")
            return
    planned = _planned_outputs(run)
    account = run.state.section("cluster").get(
        "build_service_account", planned["build_service_account"]
    )
    context = project_files.build_context(sh.folder / "build-context")
    sh.run(
        [
            "gcloud",
            "builds",
            "submit",
            str(context),
            f"--config={context / 'cloudbuild.yaml'}",
            f"--project={s.project_id}",
            f"--region={s.region}",
            f"--service-account=projects/{s.project_id}/serviceAccounts/{account}",
            f"--gcs-source-staging-dir=gs://{s.bucket}/cloudbuild/source",
            f"--substitutions=_REGISTRY={planned['registry']},_TAG={s.image_tag},"
            f"_GIT_COMMIT={git_commit()}",
        ]
    )


def _ensure_kserve(sh: Shell, run: Run) -> None:
    """cert-manager and KServe (RawDeployment) unless the cluster has them: KServe's CRDs, its
    Hugging Face runtime and the RawDeployment default are each checked, so an install that
    stopped half-way is completed by a re-run."""
    s = run.settings
    live = not s.dry_run

    def has(api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        return live and sh.kube.exists(api_version, kind, name, namespace)

    releases = "https://github.com/{}/releases/download/{}/{}"
    crd = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    if not has(*crd, "certificates.cert-manager.io"):
        cert_manager = releases.format(
            "cert-manager/cert-manager", workloads.CERT_MANAGER_VERSION, "cert-manager.yaml"
        )
        sh.run(["kubectl", "apply", "-f", cert_manager])
        sh.run(["kubectl", "wait", "deployment", "--all", "-n=cert-manager",
                "--for=condition=Available", "--timeout=5m"])  # fmt: skip
    kserve = releases.format("kserve/kserve", workloads.KSERVE_VERSION, "{}")
    # --server-side: the InferenceService CRD is too large for client-side apply's annotation
    apply = ["kubectl", "apply", "--server-side", f"--field-manager={FIELD_MANAGER}",
             "--force-conflicts", "-f"]  # fmt: skip
    # cert-manager's and KServe's webhooks answer a little after their Deployments are
    # Available (the CA bundle is injected asynchronously): the applies that call them retry
    if not has(*crd, "inferenceservices.serving.kserve.io"):
        sh.run([*apply, kserve.format("kserve.yaml")], attempts=5)
        sh.run(["kubectl", "wait", "deployment/kserve-controller-manager", "-n=kserve",
                "--for=condition=Available", "--timeout=10m"])  # fmt: skip
    if not has("serving.kserve.io/v1alpha1", "ClusterServingRuntime", workloads.HF_RUNTIME):
        sh.run([*apply, kserve.format("kserve-cluster-resources.yaml")], attempts=5)
    raw = json.dumps({"data": {"deploy": json.dumps({"defaultDeploymentMode": "RawDeployment"})}})
    sh.run(["kubectl", "patch", "configmap/inferenceservice-config", "-n=kserve",
            "--type=merge", f"-p={raw}"])  # fmt: skip


def _storage_uri(run: Run, version: str) -> str:
    """The gs:// folder of the registered version's model (MLflow serves artifacts by proxy)."""
    if run.settings.dry_run:
        return f"{artifacts_destination(run)}/{DRY}/{run.settings.registered_model_name}"
    client = tracking.client(run)
    source = client.get_model_version_download_uri(run.settings.registered_model_name, version)
    path = source.split("mlflow-artifacts:", 1)[-1].lstrip("/")
    return f"{artifacts_destination(run)}/{path}"
