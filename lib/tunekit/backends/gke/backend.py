"""Profile `gke`: Google Kubernetes Engine with GPUs, driven by terraform, gcloud, helm and the
Kubernetes API.

Each stage renders what it applies from the settings (`workloads`), writes it into `<run>/gke/`
and runs the commands through a `Shell`; objects, Secrets and the fine-tune Job go through the
Kubernetes API (`kube`), recorded in commands.sh as the kubectl equivalent. The `Plan`
(`gke.plan`, setting `dry_run`) makes the same calls with a shell that only records them and
answers with planned values.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from google.cloud import storage

from tunekit import credentials, distributed, project_files, tracking
from tunekit.backends import mlflow_chart
from tunekit.backends.base import LivePlatform
from tunekit.backends.gke import addons, jobs, katib, workloads
from tunekit.backends.gke.images import build_images
from tunekit.backends.gke.kserve_apply import apply_kserve
from tunekit.backends.gke.kube import GKE_ACCELERATOR_LABEL
from tunekit.backends.gke.shell import Shell
from tunekit.backends.gke.terraform import terraform_variables
from tunekit.local_services import ServiceSpec, ensure_service, running_services, stop_all
from tunekit.records import (
    CleanupRecord,
    ClusterRecord,
    FinetuneRecord,
    MlflowRecord,
    ServingRecord,
    SweepRecord,
)
from tunekit.registry import champion_uri
from tunekit.run import Run
from tunekit.server_requests import challenger_version, champion_version
from tunekit.sweep import Sweep, parent_run, summarize
from tunekit.tracking import artifacts_destination

# The credentials stage 02 keeps in Secrets: PostgreSQL's user, MLflow's admin and reader.
MLFLOW_SECRETS = (credentials.DATABASE, credentials.ADMIN, credentials.READER)
VOLUME_TIMEOUT = "10m"  # how long stage 07 waits for a namespace, then for its volumes, to go


class Gke(LivePlatform):
    """The series on GKE: every stage's commands run, through the `Shell` of `shell()`."""

    profile = "gke"

    def shell(self, run: Run, stage: str) -> Shell:
        return Shell(run, stage)

    # --- stage 01

    def create_cluster(self, run: Run) -> ClusterRecord:
        """terraform apply; cluster credentials; GPU nodes; namespace and service accounts."""
        sh, s = self.shell(run, "01-cluster"), run.settings
        var_file = sh.folder / "terraform.tfvars.json"
        var_file.write_text(json.dumps(terraform_variables(run), indent=2))
        tf = ["terraform", f"-chdir={project_files.terraform_dir()}"]
        sh.run([*tf, "init", "-input=false"])
        sh.run([*tf, "apply", "-input=false", "-auto-approve", f"-var-file={var_file}"])
        raw = json.loads(sh.output([*tf, "output", "-json"]))
        outputs = {k: v["value"] for k, v in raw.items()}
        # The control plane's DNS endpoint: reachable from anywhere, authorized by IAM; its IP
        # endpoint takes only the networks of `master_authorized_networks` (none by default).
        sh.run(["gcloud", "container", "clusters", "get-credentials", s.cluster_name,
                f"--region={s.region}", f"--project={s.project_id}", "--dns-endpoint"])  # fmt: skip
        sh.note(f"kubectl get nodes -l={GKE_ACCELERATOR_LABEL}={s.gpu_type} (the API)")
        gpus = sh.kube.gpus(s.gpu_type)
        if gpus:
            print(f"{gpus} {s.gpu_type} GPU(s) ready")
        else:
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
                "gpus_ready": sh.live(gpus),
                "endpoints": {},
                "commands": str(sh.script),
            },
        )

    # --- stage 02

    def start_mlflow(self, run: Run) -> MlflowRecord:
        """PostgreSQL and MLflow (Helm) with basic auth; a port-forward to its UI and API;
        the experiment and the read-only user of the model servers."""
        sh, s = self.shell(run, "02-mlflow"), run.settings
        build_images(sh, run)  # the chart runs the kit's MLflow image, its migration too
        self._ensure_secrets(sh, run)
        sh.apply("manifests/02-postgres.yaml", workloads.postgres(run))
        sh.run(["kubectl", "rollout", "status", "statefulset/postgres", f"-n={s.namespace}",
                "--timeout=10m"])  # fmt: skip
        # the basic-auth users' database, on a new volume as on one an earlier run left
        in_pod = 'psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres'  # socket: trusted
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
        run.state.update(
            "mlflow",
            {
                "in_cluster_uri": workloads.in_cluster_tracking_uri(run),
                "experiment_name": s.experiment_name,
                "artifacts_destination": artifacts_destination(run),
                "helm_values": str(values),
                "login": {
                    "username": credentials.USERNAMES[credentials.ADMIN],
                    "password_in": f"Secret {s.namespace}/{credentials.ADMIN}",
                },
            },
        )
        url = self._forward_mlflow(run)
        run.state.update("mlflow", {"tracking_uri": url})
        experiment_id = str(sh.ask(lambda: self.mlflow_objects(run, url)))
        return run.state.update(
            "mlflow",
            {"experiment_id": experiment_id, "ui_url": tracking.ui_url(url, experiment_id)},
        )

    def mlflow_objects(self, run: Run, url: str) -> str:
        """The experiment (its id) and the reader user, made through the server at `url`."""
        tracking.log_in(self.read_secret(run, credentials.ADMIN))
        experiment_id = tracking.ensure_experiment(url, run.settings.experiment_name)
        tracking.ensure_reader(
            url,
            self.read_secret(run, credentials.ADMIN),
            self.read_secret(run, credentials.READER),
        )
        return experiment_id

    def open_ui(self, run: Run) -> dict[str, Any]:
        """The port-forward to MLflow, again (the cluster keeps running the server)."""
        before = set(running_services(run))
        url = self._forward_mlflow(run)
        experiment_id = run.state.section("mlflow").get("experiment_id", "")
        ui_url = tracking.ui_url(url, experiment_id)
        run.state.update("mlflow", {"tracking_uri": url, "ui_url": ui_url})
        return {"ui_url": ui_url, "started": sorted(set(running_services(run)) - before)}

    def _forward_mlflow(self, run: Run) -> str:
        return self.port_forward(run, "mlflow", "svc/mlflow", workloads.MLFLOW_PORT, "/health")

    def read_secret(self, run: Run, name: str) -> dict[str, str]:
        """Secret `name` of the run's namespace, read through the Kubernetes API (never
        stored)."""
        from tunekit.backends.gke.kube import Kube

        found = Kube().read_secret(run.settings.namespace, name)
        if found is None:
            raise RuntimeError(
                f"Secret {run.settings.namespace}/{name} does not exist: run stage 02-mlflow first"
            )
        return found

    def storage_client(self, run: Run) -> storage.Client | None:
        """google-cloud-storage with the application default credentials."""
        return storage.Client(project=run.settings.project_id)

    def _ensure_secrets(self, sh: Shell, run: Run) -> None:
        """Create each of MLflow's Secrets that does not exist yet, with fresh values; keep the
        ones that do (PostgreSQL keeps the password it was initialised with). Only NotFound
        means absent: any other answer of the API stops the stage before anything is written."""
        for name in MLFLOW_SECRETS:
            if sh.kube.read_secret(run.settings.namespace, name) is None:
                secret = workloads.secret(run, name, credentials.new_login(name))
                sh.apply_secret(f"manifests/02-secret-{name}.yaml", secret)
            else:
                sh.note(f"Secret {name} exists: kept")

    # --- stage 03

    def finetune(self, run: Run) -> FinetuneRecord:
        """Run `tunekit.train` as a Job (its image built in stage 02) and follow it.

        The Job's attempt continues where the last one stopped: a finished one is reused, a
        running or pending one is followed, after a failed one a new attempt resumes from the
        checkpoints in the bucket. A pod that finds no node for `schedule_timeout_s`, a Job
        that fails or runs past `job_deadline_h`, end the stage with the reason, the last log
        lines and the events.
        """
        sh, s = self.shell(run, "03-finetune"), run.settings
        if distributed.launched(s):
            addons.ensure_trainer(sh)
        self._apply_hf_token(sh, run)
        job = s.finetune_job  # the fine-tune's checkpoints, in every attempt
        result_uri = workloads.finetune_result_uri(run, job)
        name, attempt, state = jobs.current_attempt(sh, run, job)
        if state != "complete":
            if state is None:  # none yet, or the last one failed: a new attempt
                objects = workloads.finetune_objects(
                    run, job, workloads.in_cluster_tracking_uri(run), s.to_yaml(), attempt
                )
                sh.apply("manifests/03-finetune-job.yaml", objects)
            jobs.follow(sh, run, name)
        result = json.loads(sh.output(["gcloud", "storage", "cat", result_uri]))
        return run.state.update(
            "finetune",
            {
                **result,
                "status": sh.live("finished"),
                "job": name,
                "attempt": attempt,
                "job_uri": result_uri.rsplit("/", 1)[0],
                "reused": state == "complete",
            },
        )

    def _apply_hf_token(self, sh: Shell, run: Run) -> None:
        """The Secret with $HF_TOKEN the fine-tune's pods read (gated models need it)."""
        if token := sh.environ("HF_TOKEN"):
            secret = workloads.secret(run, workloads.HF_SECRET, {"HF_TOKEN": token})
            sh.apply_secret("manifests/03-secret-hf-token.yaml", secret)
        else:
            print("HF_TOKEN is not set: gated models such as google/gemma-2-9b cannot be "
                  "downloaded")  # fmt: skip

    def sweep(self, run: Run, sweep: Sweep) -> SweepRecord:
        """The sweep as a Katib Experiment (Katib installed first where the cluster lacks it):
        `parallel` trials at a time, each the fine-tune's Job with the trial's settings; the
        MLflow parent run is made first, followed until Katib ends the Experiment, then given
        the best trial's metrics and the table of trials, as locally."""
        sh = self.shell(run, "03-sweep")
        self._apply_hf_token(sh, run)
        client = self.tracking_client(run)
        parent = parent_run(run, client, sweep) if client else sh.live("")
        katib.run_sweep(sh, run, sweep, workloads.in_cluster_tracking_uri(run), parent)
        if client is None:  # the plan: no MLflow to summarise in
            return run.state.update(
                "sweep", {"id": sweep.id, "parent_run_id": parent, "experiment": sweep.id}
            )
        return summarize(run, client, sweep, parent)

    # --- stages 05 and 06

    def deploy_simple(self, run: Run) -> ServingRecord:
        """The FastAPI Deployment (champion; challenger too in a rollout) and Service, scaled
        on its queue; a port-forward to ask it."""
        sh, s = self.shell(run, "05-deploy-simple"), run.settings
        version = champion_version(run)
        addons.ensure_metrics_adapter(sh)
        objects = workloads.serve_deployment(
            run, champion_uri(s), version, workloads.in_cluster_tracking_uri(run)
        )
        sh.apply("manifests/05-serve.yaml", objects)
        sh.run(["kubectl", "rollout", "status", "deployment/tunekit-serve",
                f"-n={s.namespace}", "--timeout=20m"])  # fmt: skip
        url = self.port_forward(run, "fastapi", "svc/tunekit-serve", 80, "/readyz")
        return run.state.update(
            "serving",
            {
                "fastapi": {
                    "url": url,
                    "in_cluster_url": workloads.in_cluster_url(run, "tunekit-serve"),
                    "docs": f"{url}/docs",
                    "model_uri": champion_uri(s),
                    "model_version": version,
                }
            },
        )

    def deploy_kserve(self, run: Run) -> ServingRecord:
        """MLServer's runtime, InferenceService (V2) and Gateway; with a Hub base vLLM's too
        (OpenAI API), scaled on its queue; during a rollout the challenger is MLServer's canary
        and vLLM's second adapter. Waits until they serve (`kserve_apply`)."""
        sh, s = self.shell(run, "06-deploy-kserve"), run.settings
        name, version = s.registered_model_name, champion_version(run)
        addons.ensure_kserve(sh)
        storage_uri = self.storage_uri(run, version)
        challenger = challenger_version(run)
        challenger_uri = self.storage_uri(run, challenger) if challenger else ""
        services = [workloads.mlserver_inference_service(run, storage_uri, challenger_uri,
                                                         challenger)]  # fmt: skip
        others: list[dict] = []
        if workloads.vllm_serves(run):
            addons.ensure_metrics_adapter(sh)
            vllm, *others = workloads.vllm_inference_service(run, storage_uri, challenger_uri)
            services.append(vllm)
        runtime = workloads.mlserver_runtime(run, workloads.in_cluster_tracking_uri(run), version)
        gateway_url = apply_kserve(sh, run, [runtime, *services, *others], services, challenger)
        ready = f"/v2/models/{name}/ready"
        url = self.port_forward(run, "mlserver", f"svc/{name}-predictor", 80, ready)
        record: ServingRecord = {
            "mlserver": {
                "url": url,
                "in_cluster_url": workloads.in_cluster_url(run, f"{name}-predictor"),
                "infer_url": f"{url}/v2/models/{name}/infer",
                "gateway_infer_url": f"{gateway_url}/v2/models/{name}/infer" if gateway_url else "",
                "storage_uri": storage_uri,
                "model_uri": champion_uri(s),
                "model_version": version,
            }
        }
        if len(services) > 1:
            vllm_version = addons.KSERVE_VLLM[addons.KSERVE_VERSION]
            record["vllm"] = workloads.vllm_served(run, challenger, vllm_version)
        if challenger:
            record["mlserver"]["canary"] = workloads.canary_served(run, challenger, challenger_uri)
        return run.state.update("serving", record)

    def storage_uri(self, run: Run, version: str) -> str:
        """The gs:// folder of the registered version's model (MLflow proxies artifacts)."""
        client = self.tracking_client(run)
        assert client is not None
        source = client.get_model_version_download_uri(run.settings.registered_model_name, version)
        path = source.split("mlflow-artifacts:", 1)[-1].lstrip("/")
        return f"{artifacts_destination(run)}/{path}"

    def port_forward(self, run: Run, name: str, target: str, port: int, health: str) -> str:
        """`kubectl port-forward` as a local service of the run (07 stops it); its URL."""
        command = ["kubectl", "port-forward", f"-n={run.settings.namespace}", target,
                   f"{{port}}:{port}"]  # fmt: skip
        return str(ensure_service(run, ServiceSpec(f"port-forward-{name}", command, health))["url"])

    # --- stage 07

    def cleanup(self, run: Run) -> CleanupRecord:
        """Delete the workloads, MLflow and PostgreSQL, the namespaces the kit's installs made
        volumes in; wait until those volumes (Persistent Disks) are gone; terraform destroy.
        A volume still there after the wait is reported with its disk: destroying the
        cluster leaves such a disk behind, paid for."""
        sh, s = self.shell(run, "07-cleanup"), run.settings
        stopped = stop_all(run)  # the local port-forwards
        # the disks: PostgreSQL's claim here, Katib's MySQL (katib v0.19.0
        # manifests/v1beta1/components/mysql/pvc.yaml: katib-mysql, 10Gi, namespace kubeflow)
        namespaces = [s.namespace, katib.NAMESPACE]
        volumes = sorted(v for ns in namespaces for v in sh.kube.volume_claims(ns).values() if v)
        folder = sh.folder / "manifests"
        for path in sorted(folder.glob("0[3-6]-*.yaml"), reverse=True):
            sh.run(["kubectl", "delete", "-f", str(path), "--ignore-not-found", "--wait=false"],
                   check=False)  # fmt: skip
        sh.run(["helm", "uninstall", "mlflow", f"--namespace={s.namespace}",
                "--ignore-not-found"], check=False)  # fmt: skip
        # a namespace's deletion waits for its claims (once their pods are gone) and its Gateway
        # (once its load balancer, on the proxy-only subnet terraform deletes, is gone); the
        # kit's first, while Katib's controller is there to clear its objects' finalizers
        for namespace in namespaces:
            sh.run(["kubectl", "delete", "namespace", namespace, "--ignore-not-found",
                    f"--timeout={VOLUME_TIMEOUT}"], check=False)  # fmt: skip
        left = self._wait_deleted(sh, volumes)
        var_file = sh.folder / "terraform.tfvars.json"
        sh.run(["terraform", f"-chdir={project_files.terraform_dir()}", "destroy",
                "-input=false", "-auto-approve", f"-var-file={var_file}"])  # fmt: skip
        for volume, disk in left.items():
            print(f"PersistentVolume {volume} was not deleted in {VOLUME_TIMEOUT}: its disk is "
                  f"left; delete it with `{shlex.join(delete_disk(disk))}`")  # fmt: skip
        return run.state.update(
            "cleanup",
            {
                "stopped": stopped,
                "still_running": sorted(running_services(run)),
                "volumes_deleted": [v for v in volumes if v not in left],
                "disks_left": sorted(left.values()),
                "destroyed": sh.live(True),
                "commands": str(sh.script),
            },
        )

    def _wait_deleted(self, sh: Shell, volumes: list[str]) -> dict[str, str]:
        """Wait until the PersistentVolumes are deleted; those still there, with their disk."""
        if not volumes:
            sh.note("kubectl wait --for=delete on the namespaces' PersistentVolumes: none bound")
            return {}
        sh.run(["kubectl", "wait", "--for=delete", *(f"pv/{v}" for v in volumes),
                f"--timeout={VOLUME_TIMEOUT}"], check=False)  # fmt: skip
        left = {}
        for volume in volumes:
            if (found := sh.kube.get("v1", "PersistentVolume", volume)) is not None:
                csi = found.get("spec", {}).get("csi", {})
                left[volume] = csi.get("volumeHandle") or volume  # projects/P/zones/Z/disks/D
        return left


def delete_disk(handle: str) -> list[str]:
    """The gcloud command that deletes a Persistent Disk named by its CSI volume handle
    (`projects/P/zones/Z/disks/D`, pd.csi.storage.gke.io; regional disks: `regions/R`)."""
    parts = handle.split("/")
    if len(parts) != 6 or parts[0] != "projects" or parts[4] != "disks":
        return ["gcloud", "compute", "disks", "delete", handle]
    where = "--zone" if parts[2] == "zones" else "--region"
    return ["gcloud", "compute", "disks", "delete", parts[5], f"{where}={parts[3]}",
            f"--project={parts[1]}"]  # fmt: skip
