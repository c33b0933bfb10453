"""Profile `gke`: Google Kubernetes Engine. Filled in by the gke-profile issue."""

from __future__ import annotations

from typing import Any, NoReturn

from tunekit.run import Run


def _not_yet(stage: str) -> NoReturn:
    raise NotImplementedError(
        f"profile 'gke': stage {stage} is not implemented yet; use profile 'local' "
        "(the gke path lands with terraform/, Helm and the manifests)"
    )


def create_cluster(run: Run) -> dict[str, Any]:
    _not_yet("01-cluster")


def start_mlflow(run: Run) -> dict[str, Any]:
    _not_yet("02-mlflow")


def finetune(run: Run) -> dict[str, Any]:
    _not_yet("03-finetune")


def deploy_simple(run: Run) -> dict[str, Any]:
    _not_yet("05-deploy-simple")


def deploy_kserve(run: Run) -> dict[str, Any]:
    _not_yet("06-deploy-kserve")


def cleanup(run: Run) -> dict[str, Any]:
    _not_yet("07-cleanup")
