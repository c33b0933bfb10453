"""tunekit: fine-tune Gemma-2 with LoRA as tracked MLflow experiments, on GKE or one laptop."""

from importlib.metadata import PackageNotFoundError, version

from tunekit import plots
from tunekit.data import preview_examples
from tunekit.run import Run, open_run, start_run
from tunekit.services import running_services
from tunekit.settings import Settings, SettingsError, load_settings
from tunekit.stages import STAGES, cleanup, create_cluster, finetune, start_mlflow
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
    "__version__",
    "cleanup",
    "create_cluster",
    "finetune",
    "load_settings",
    "open_run",
    "plots",
    "preview_examples",
    "running_services",
    "start_mlflow",
    "start_run",
    "verify_artifact_store",
]
