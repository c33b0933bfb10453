"""The public function of each stage. Notebooks call these; the run's profile picks the backend."""

from __future__ import annotations

from typing import Any

from tunekit.backends import backend_for
from tunekit.run import Run
from tunekit.sweep import Sweep

STAGES = (
    "01-cluster",
    "02-mlflow",
    "03-finetune",
    "04-registry",
    "05-deploy-simple",
    "06-deploy-kserve",
    "07-cleanup",
)


def create_cluster(run: Run) -> dict[str, Any]:
    """Stage 01: the cluster and the artifact bucket (locally: a GCS emulator)."""
    return backend_for(run).create_cluster(run)


def start_mlflow(run: Run) -> dict[str, Any]:
    """Stage 02: the MLflow tracking server with artifacts in the bucket, and the experiment."""
    return backend_for(run).start_mlflow(run)


def finetune(run: Run) -> dict[str, Any]:
    """Stage 03: a LoRA fine-tune tracked as one MLflow run; resumes one that stopped."""
    return backend_for(run).finetune(run)


def sweep(run: Run, sweep: Sweep) -> dict[str, Any]:
    """Stage 03, many fine-tunes: the trials of `sweep`, each a child run of one MLflow parent
    run that gets the best trial's metrics; stage 04 then registers the best."""
    return backend_for(run).sweep(run, sweep)


def register_model(run: Run) -> dict[str, Any]:
    """Stage 04: the best fine-tune (or `pin_run_id`) registered with alias `champion`."""
    return backend_for(run).register_model(run)


def deploy_simple(run: Run) -> dict[str, Any]:
    """Stage 05: `tunekit.serve` (FastAPI) on the champion; locally a uvicorn service."""
    return backend_for(run).deploy_simple(run)


def deploy_kserve(run: Run) -> dict[str, Any]:
    """Stage 06: MLServer (KServe's V2 runtime) on the champion; locally `mlserver start`."""
    return backend_for(run).deploy_kserve(run)


def cleanup(run: Run) -> dict[str, Any]:
    """Stage 07: stop everything the run's state records. Safe to run twice."""
    return backend_for(run).cleanup(run)
