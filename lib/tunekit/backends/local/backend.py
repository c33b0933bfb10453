"""Profile `local`: the platform as processes on this machine (GCS emulator, MLflow server,
model servers), the fine-tune as a subprocess."""

from __future__ import annotations

from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from tunekit import credentials, run_lock, tracking
from tunekit.backends.base import LivePlatform
from tunekit.backends.local import finetune, postgres, processes
from tunekit.local_services import ensure_service, running_services, stop_all
from tunekit.objective import SCORE
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
from tunekit.server_requests import champion_version
from tunekit.sweep import Sweep, failure, optuna_sampler, parent_run, summarize


class Local(LivePlatform):
    """The series on one machine, with no cloud and no GPU."""

    profile = "local"

    def create_cluster(self, run: Run) -> ClusterRecord:
        """Start the GCS emulator (objects under the run dir) and create the bucket."""
        emulator = self._emulator(run)
        bucket = self.storage_client(run).bucket(run.settings.bucket)
        if not bucket.exists():
            bucket.create()
        return run.state.update(
            "cluster",
            {
                "bucket": run.settings.bucket,
                "bucket_url": f"gs://{run.settings.bucket}",
                "reused": emulator["reused"],
            },
        )

    def start_mlflow(self, run: Run) -> MlflowRecord:
        """Start `mlflow server` (basic auth, proxied artifacts in the bucket; SQLite, or
        PostgreSQL with `mlflow_backend=postgresql`); get the experiment and the reader."""
        server = self._mlflow(run)
        tracking.log_in(self.read_secret(run, credentials.ADMIN))
        experiment_id = tracking.ensure_experiment(server["url"], run.settings.experiment_name)
        secrets = credentials.LocalSecrets(run.dir)
        tracking.ensure_reader(
            server["url"], secrets.ensure(credentials.ADMIN), secrets.ensure(credentials.READER)
        )
        return run.state.update(
            "mlflow",
            {
                "tracking_uri": server["url"],
                "ui_url": tracking.ui_url(server["url"], experiment_id),
                "experiment_name": run.settings.experiment_name,
                "experiment_id": experiment_id,
                "artifacts_destination": tracking.artifacts_destination(run),
                "backend": run.settings.mlflow_backend,
                "login": {
                    "username": credentials.USERNAMES[credentials.ADMIN],
                    "password_in": str(secrets.path),
                },
                "reused": server["reused"],
            },
        )

    def open_ui(self, run: Run) -> dict[str, Any]:
        """The emulator and the MLflow server of stages 01-02, started again where they
        stopped (the same specs: nothing else of those stages runs again)."""
        before = set(running_services(run))
        self._emulator(run)
        server = self._mlflow(run)
        experiment_id = run.state.section("mlflow").get("experiment_id", "")
        ui_url = tracking.ui_url(server["url"], experiment_id)
        run.state.update("mlflow", {"tracking_uri": server["url"], "ui_url": ui_url})
        return {"ui_url": ui_url, "started": sorted(set(running_services(run)) - before)}

    def read_secret(self, run: Run, name: str) -> dict[str, str]:
        """Credential `name` from the run's secrets file (stage 02 creates them)."""
        found = credentials.LocalSecrets(run.dir).get(name)
        if found is None:
            raise RuntimeError(
                f"no credential {name!r} for run {run.id}: run stage 02-mlflow first"
            )
        return found

    def storage_client(self, run: Run) -> storage.Client:
        """The real google-cloud-storage client, against the run's emulator."""
        return storage.Client(
            project=run.settings.project_id or "local",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=processes.emulator_endpoint(run)),
        )

    def finetune(self, run: Run) -> FinetuneRecord:
        """Run `python -m tunekit.train` as a subprocess; resume it if it stopped half-way.
        Holding the run dir (RunBusyError naming the holder if another process does), it first
        starts the GCS emulator and MLflow of stages 01-02 again if they stopped."""
        tracking.tracking_uri(run)  # stage 02 ran
        with run_lock.exclusive(run.dir, f"fine-tune {finetune.job_dir(run).name}"):
            try:
                started = self.open_ui(run)["started"]
            except (RuntimeError, TimeoutError) as e:
                raise RuntimeError(
                    f"the GCS emulator or MLflow of run {run.id} stopped and did not start "
                    f"again: {e}\nStart them with `tunekit run --stages 01-02 --run-dir "
                    f"{run.dir}`, then re-run stage 03"
                ) from e
            if started:
                print(f"tunekit: {', '.join(started)} had stopped: started again", flush=True)
            # read again: a restarted MLflow may listen on another port
            return finetune.run_local(run, tracking.tracking_uri(run))

    def sweep(self, run: Run, sweep: Sweep) -> SweepRecord:
        """The trials one after another (the machine has two cores), as Optuna's sampler asks
        for them; each is `finetune` with the trial's settings. A failed trial is told to Optuna
        as failed and the next one starts."""
        import optuna

        tracking.tracking_uri(run)  # stage 02 ran
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # the fine-tunes say enough
        with run_lock.exclusive(run.dir, f"tunekit sweep {sweep.id}"):
            self.open_ui(run)
            client = self.tracking_client(run)
            assert client is not None
            parent = parent_run(run, client, sweep)
            print(f"tunekit: sweep {sweep.id}: {sweep.trial_count} trials of {sweep.space} "
                  f"({sweep.sampler}), parent run {parent}", flush=True)  # fmt: skip

            def trial(asked: optuna.Trial) -> float:
                values = {k: asked.suggest_categorical(k, v) for k, v in sweep.space.items()}
                print(f"tunekit: trial {asked.number + 1}/{sweep.trial_count}: {values}",
                      flush=True)  # fmt: skip
                try:
                    result = self.finetune(Run(run.dir, sweep.trial_settings(values)))
                except RuntimeError as e:
                    print(f"tunekit: trial {asked.number + 1} failed: {failure(e)}", flush=True)
                    raise
                return result[SCORE]

            study = optuna.create_study(
                study_name=sweep.id, direction="maximize", sampler=optuna_sampler(sweep)
            )
            try:  # a failed trial is recorded as failed (`catch`), and the next one starts
                study.optimize(trial, n_trials=sweep.trial_count, catch=(RuntimeError,))
            except BaseException:
                client.set_terminated(parent, "KILLED")
                raise
            return summarize(run, client, sweep, parent)

    def deploy_simple(self, run: Run) -> ServingRecord:
        """Start (or reuse) `tunekit.serve` under uvicorn on the champion; wait until ready."""
        server = ensure_service(run, processes.fastapi_spec(run))
        return run.state.update(
            "serving",
            {
                "fastapi": {
                    "url": server["url"],
                    "model_uri": champion_uri(run.settings),
                    "model_version": champion_version(run),
                    "docs": f"{server['url']}/docs",
                    "reused": server["reused"],
                }
            },
        )

    def deploy_kserve(self, run: Run) -> ServingRecord:
        """Start (or reuse) MLServer with the MLflow runtime on the champion (V2 protocol)."""
        server = ensure_service(run, processes.mlserver_spec(run))
        name = run.settings.registered_model_name
        return run.state.update(
            "serving",
            {
                "mlserver": {
                    "url": server["url"],
                    "infer_url": f"{server['url']}/v2/models/{name}/infer",
                    "model_uri": champion_uri(run.settings),
                    "model_version": champion_version(run),
                    "reused": server["reused"],
                }
            },
        )

    def cleanup(self, run: Run) -> CleanupRecord:
        """Stop every service the state records; the run dir (data, logs) stays for `tunekit
        ui`."""
        stopped = stop_all(run)
        return run.state.update(
            "cleanup", {"stopped": stopped, "still_running": sorted(running_services(run))}
        )

    @staticmethod
    def _emulator(run: Run) -> dict[str, Any]:
        emulator = ensure_service(run, processes.emulator_spec(run))
        run.state.update("cluster", {"profile": "local", "endpoints": {"gcs": emulator["url"]}})
        return emulator

    @staticmethod
    def _mlflow(run: Run) -> dict[str, Any]:
        database = None
        if run.settings.mlflow_backend == "postgresql":
            db = ensure_service(run, postgres.server_spec(run))
            postgres.ensure_databases(run, db["port"])
            database = postgres.environment(run, db["port"])
        spec = processes.mlflow_server_spec(run, processes.emulator_endpoint(run), database)
        return ensure_service(run, spec)
