"""The public function of each stage, and what the notebooks read from the run's platform
between them. The run's profile picks the backend (`backend_for`): below the CLI, this is the
one module that does; the modules below receive a client, rows or a function to ask a server
with."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from tunekit import credentials, data, registry, server_requests, tracking
from tunekit import reproduce as reproduction
from tunekit.backends import backend_for
from tunekit.records import (
    CleanupRecord,
    ClusterRecord,
    FinetuneRecord,
    MlflowRecord,
    RegistryRecord,
    ReproduceRecord,
    RolloutRecord,
    ServerName,
    ServingRecord,
    SweepRecord,
)
from tunekit.run import Run
from tunekit.server_requests import TUTORIAL
from tunekit.sweep import Sweep

if TYPE_CHECKING:
    from mlflow import MlflowClient

STAGES = (
    "01-cluster",
    "02-mlflow",
    "03-finetune",
    "04-registry",
    "05-deploy-simple",
    "06-deploy-kserve",
    "07-cleanup",
)


def create_cluster(run: Run) -> ClusterRecord:
    """Stage 01: the cluster and the artifact bucket (locally: a GCS emulator)."""
    return backend_for(run).create_cluster(run)


def start_mlflow(run: Run) -> MlflowRecord:
    """Stage 02: the MLflow tracking server with artifacts in the bucket, and the experiment."""
    return backend_for(run).start_mlflow(run)


def finetune(run: Run) -> FinetuneRecord:
    """Stage 03: a LoRA fine-tune tracked as one MLflow run; resumes one that stopped."""
    return backend_for(run).finetune(run)


def sweep(run: Run, search: Sweep) -> SweepRecord:
    """Stage 03, many fine-tunes: the trials of `search`, each a child run of one MLflow
    parent run that gets the best trial's metrics; stage 04 then registers the best."""
    return backend_for(run).sweep(run, search)


def register_model(run: Run) -> RegistryRecord:
    """Stage 04: the best fine-tune (or `pin_run_id`) registered with alias `champion`."""
    return backend_for(run).register_model(run)


def deploy_simple(run: Run) -> ServingRecord:
    """Stage 05: `tunekit.serve` (FastAPI) on the champion; locally a uvicorn service."""
    return backend_for(run).deploy_simple(run)


def deploy_kserve(run: Run) -> ServingRecord:
    """Stage 06: MLServer (KServe's V2 runtime) on the champion; locally `mlserver start`."""
    return backend_for(run).deploy_kserve(run)


def cleanup(run: Run) -> CleanupRecord:
    """Stage 07: stop everything the run's state records. Safe to run twice."""
    return backend_for(run).cleanup(run)


# --- what the notebooks read from the run's platform between the stages


def login(run: Run, name: str = credentials.ADMIN) -> dict[str, str]:
    """The login of credential `name` (the admin by default): the run's secrets file locally,
    the Kubernetes Secret on GKE."""
    return backend_for(run).read_secret(run, name)


def use_login(run: Run, name: str = credentials.ADMIN) -> None:
    """Log this process's MLflow client in as credential `name` of the run."""
    tracking.log_in(login(run, name))


def tracking_client(run: Run) -> MlflowClient | None:
    """The MlflowClient of the run's server, logged in as the admin; None where the backend has
    no server to read."""
    return backend_for(run).tracking_client(run)


def verify_artifact_store(run: Run) -> dict[str, Any]:
    """Stage 02's check: a small artifact logged through the server appears in the bucket."""
    backend = backend_for(run)
    mlflow_client, storage = backend.tracking_client(run), backend.storage_client(run)
    if mlflow_client is None or storage is None:
        print("the artifact check is skipped: this backend has no server to check")
        return {"checked": False}
    return tracking.verify_artifact_store(mlflow_client, storage, run.settings.bucket, run.id)


def compare_runs(run: Run) -> Any:
    """The experiment's finished, evaluated fine-tunes, best first (a pandas DataFrame):
    what stage 04 chooses from."""
    return registry.compare_runs(run, tracking_client(run))


def preview_examples(run: Run, n: int = 3) -> Any:
    """The first `n` training examples as the model sees them (a pandas DataFrame; None where
    the backend reads no rows)."""
    if (splits := backend_for(run).training_rows(run)) is None:
        return None
    return data.preview_examples(splits[0], n)


def ask(run: Run, question: str = TUTORIAL["question"], context: str = TUTORIAL["context"],
        server: ServerName = "fastapi", expected: str = "") -> dict[str, Any]:  # fmt: skip
    """Ask the run's `fastapi` (05) or `mlserver` (06) server one question
    (`server_requests.ask`)."""
    post = partial(backend_for(run).ask, run)
    return server_requests.ask(run, post, question, context, server, expected)


def compare_servers(
    run: Run, question: str = TUTORIAL["question"], context: str = TUTORIAL["context"]
) -> Any:
    """The same question to each server the run deployed: server, version and SQL."""
    return server_requests.compare_servers(
        run, partial(backend_for(run).ask, run), question, context
    )


def reproduce(
    run: Run, ref: str, allow_other_commit: bool = False, tolerance: float = 0.01
) -> ReproduceRecord:
    """`tunekit reproduce`: fine-tune `ref` (a run id or a registered model's URI) again on
    this run's platform; the metrics side by side, recorded in the run's state (`reproduce`)."""
    backend = backend_for(run)
    client = backend.tracking_client(run)
    if client is None:
        raise reproduction.ReproduceRefused(
            "this backend has no MLflow server to read the recorded run from"
        )
    original = reproduction.recorded(client, reproduction.resolve_run_id(client, ref))
    again = Run(run.dir, reproduction.settings_for(run, original))
    warnings = reproduction.check(original, backend.training_rows(again), allow_other_commit)
    for warning in warnings:
        print(f"tunekit: note: {warning}", flush=True)
    return reproduction.record(run, original, backend.finetune(again), tolerance, warnings)


def rollout(run: Run, deadline_s: float = 600, min_requests: int = 200) -> RolloutRecord:
    """`tunekit rollout`: decide on the challenger that stage 05 serves beside the champion,
    on live numbers (`tunekit.promotion`): promoted or rolled back, the aliases moved, and the
    servers deployed again on the champion alone (stage 06's too where it ran: on gke the
    challenger was MLServer's canary and vLLM's second adapter)."""
    from tunekit import eval_sets, run_lock
    from tunekit.promotion import Rule, roll_out

    backend = backend_for(run)
    client = backend.tracking_client(run)
    if client is None:
        raise RuntimeError("this backend has no MLflow server: nothing is deployed to roll out")
    # one rollout at a time, and no stage 04 moving the aliases meanwhile
    with run_lock.exclusive(run.dir, "tunekit rollout"):
        record = roll_out(
            run, client, partial(backend.ask, run), _read_text, eval_sets.validation_rows(),
            Rule(min_requests=min_requests), deadline_s,
        )  # fmt: skip
        backend.deploy_simple(run)
        if run.state.section("serving").get("mlserver"):
            backend.deploy_kserve(run)
    return record


def _read_text(url: str) -> str:
    """GET `url`'s text; a server that does not answer is a RuntimeError saying what to run."""
    import requests

    try:
        response = requests.get(url, timeout=30)
        response.raise_for_status()
    except requests.RequestException as e:
        raise RuntimeError(f"could not read {url} ({type(e).__name__}): is stage 05's server "
                           "running? `tunekit run --stages 05` starts it") from None  # fmt: skip
    return response.text
