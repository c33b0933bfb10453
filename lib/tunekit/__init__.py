"""tunekit: fine-tune Gemma-2 with LoRA as tracked MLflow experiments, on GKE or one laptop."""

from importlib.metadata import PackageNotFoundError, version

from tunekit import plots
from tunekit.data import preview_examples
from tunekit.registry import compare_runs
from tunekit.run import Run, open_run, start_run
from tunekit.services import running_services
from tunekit.serving import ask, compare_servers
from tunekit.settings import Settings, SettingsError, load_settings
from tunekit.stages import (
    STAGES,
    cleanup,
    create_cluster,
    deploy_kserve,
    deploy_simple,
    finetune,
    register_model,
    start_mlflow,
    sweep,
)
from tunekit.sweep import Sweep, parse_grid
from tunekit.tracking import verify_artifact_store

try:
    __version__ = version("tunekit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "STAGES",
    "Run",
    "Settings",
    "SettingsError",
    "Sweep",
    "__version__",
    "ask",
    "cleanup",
    "compare_runs",
    "compare_servers",
    "create_cluster",
    "deploy_kserve",
    "deploy_simple",
    "finetune",
    "load_settings",
    "open_run",
    "parse_grid",
    "plots",
    "preview_examples",
    "register_model",
    "running_services",
    "start_mlflow",
    "start_run",
    "sweep",
    "verify_artifact_store",
]
