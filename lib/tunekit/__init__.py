"""tunekit: fine-tune Gemma-2 with LoRA as tracked MLflow experiments, on GKE or one laptop."""

from tunekit import plots
from tunekit.local_services import running_services
from tunekit.provenance import kit_version
from tunekit.run import Run, open_run, start_run
from tunekit.settings import Settings, SettingsError, load_settings
from tunekit.stages import (
    STAGES,
    ask,
    cleanup,
    compare_runs,
    compare_servers,
    create_cluster,
    deploy_kserve,
    deploy_simple,
    finetune,
    preview_examples,
    register_model,
    rollout,
    start_mlflow,
    sweep,
    verify_artifact_store,
)
from tunekit.sweep import Sweep, parse_grid

__version__ = kit_version()

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
    "rollout",
    "running_services",
    "start_mlflow",
    "start_run",
    "sweep",
    "verify_artifact_store",
]
