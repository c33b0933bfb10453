"""What a fine-tune records in MLflow: its run, tags, params, inputs, evaluation and model."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow

from tunekit.data import FILE_SUFFIXES
from tunekit.prompts import build_prompt
from tunekit.settings import Settings

RUN_ID_FILE = "mlflow_run_id"
MODEL_PACKAGES = ("torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors")


@contextmanager
def finetune_run(settings: Settings, output_dir: Path, resume: bool) -> Iterator[Any]:
    """Start the fine-tune's MLflow run, or resume the one recorded in `output_dir`.

    A resumed run keeps its id, params and inputs; its metrics continue from the checkpoint.
    """
    mlflow.set_experiment(settings.experiment_name)
    mlflow.config.enable_async_logging(True)
    mlflow.set_system_metrics_sampling_interval(5)
    id_file = output_dir / RUN_ID_FILE
    run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
    with mlflow.start_run(run_id=run_id, log_system_metrics=True) as mlflow_run:
        id_file.write_text(mlflow_run.info.run_id)
        if run_id is None:
            mlflow.set_tags(run_tags(settings))
            mlflow.log_params(run_params(settings))
        yield mlflow_run
        mlflow.flush_async_logging()


def run_tags(settings: Settings) -> dict[str, str]:
    from tunekit import __version__

    return {
        "tunekit.profile": settings.profile,
        "tunekit.model_id": settings.model_id,
        "tunekit.dataset": settings.dataset,
        "tunekit.version": __version__,
        "tunekit.git_commit": git_commit(),
    }


def run_params(settings: Settings) -> dict[str, Any]:
    """Every setting, flattened, as `tunekit.<name>` (settings hold no secrets)."""
    return {
        f"tunekit.{name}": ",".join(value) if isinstance(value, list) else value
        for name, value in settings.model_dump().items()
    }


def git_commit() -> str:
    """The kit's commit: $TUNEKIT_GIT_COMMIT (baked into images), else git, else 'unknown'."""
    import os

    if commit := os.environ.get("TUNEKIT_GIT_COMMIT"):
        return commit
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def log_inputs(settings: Settings, train_rows: list[dict], eval_rows: list[dict]) -> None:
    """Both splits as MLflow datasets (source and digest)."""
    import pandas as pd
    from mlflow.data.pandas_dataset import from_pandas

    source = dataset_source(settings)
    for name, rows, context in (
        ("train", train_rows, "training"),
        ("eval", eval_rows, "evaluation"),
    ):
        dataset = from_pandas(pd.DataFrame(rows), source=source, name=name)
        mlflow.log_input(dataset, context=context)


def dataset_source(settings: Settings) -> Any:
    """Where the rows came from: the generator and its seed, a file, or a Hub dataset."""
    if settings.dataset == "synthetic":
        from mlflow.data.code_dataset_source import CodeDatasetSource

        return CodeDatasetSource(
            tags={
                "generator": "tunekit.synthetic",
                "seed": settings.seed,
                "rows": settings.synthetic_rows,
            }
        )
    if Path(settings.dataset).suffix in FILE_SUFFIXES:
        # made by register_artifact_dataset_sources() when mlflow.data is imported
        from mlflow.data.artifact_dataset_sources import (  # type: ignore[attr-defined]
            LocalArtifactDatasetSource,
        )

        return LocalArtifactDatasetSource(str(Path(settings.dataset).resolve()))
    from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

    return HuggingFaceDatasetSource(path=settings.dataset, split="train")


def log_evaluation(rows: list[dict], predictions: dict[str, list[str]], seed: int) -> dict:
    """Exact match and execution accuracy per model as metrics, and a per-row table."""
    import pandas as pd

    from tunekit.evaluate import evaluate

    table = pd.DataFrame(
        {
            "question": [r["question"] for r in rows],
            "context": [r["context"] for r in rows],
            "prompt": [build_prompt(r["question"], r["context"]) for r in rows],
            "gold": [r["answer"] for r in rows],
        }
    )
    metrics = {}
    for model, predicted in predictions.items():
        result = evaluate(rows, predicted, seed)
        metrics[f"{model}_exact_match"] = result["exact_match"]
        metrics[f"{model}_execution_accuracy"] = result["execution_accuracy"]
        table[f"{model}_prediction"] = predicted
        table[f"{model}_exact"] = [s["exact"] for s in result["scores"]]
        table[f"{model}_correct"] = [s["execution"] for s in result["scores"]]
    mlflow.log_metrics(metrics)
    mlflow.log_table(table, artifact_file="evaluation/predictions.json")
    return metrics


def log_adapter(
    model: Any, tokenizer: Any, base: str, settings: Settings, example: dict[str, str]
) -> str:
    """Log the LoRA adapter (not the base weights) as a text-generation model; its URI."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    signature = ModelSignature(
        inputs=Schema([ColSpec("string")]), outputs=Schema([ColSpec("string")])
    )
    info = mlflow.transformers.log_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        name="model",
        task="text-generation",
        base_model_path=base if Path(base).is_dir() else None,
        signature=signature,
        input_example=build_prompt(example["question"], example["context"]),
        model_config={
            "max_new_tokens": settings.eval_max_new_tokens,
            "do_sample": False,
            "return_full_text": False,
        },
        pip_requirements=pip_requirements(),
    )
    return info.model_uri


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model (inferring them imports half of PyPI)."""
    pins = [f"mlflow=={mlflow.__version__}"]
    for package in MODEL_PACKAGES:
        with suppress(PackageNotFoundError):
            pins.append(f"{package}=={version(package).split('+')[0]}")
    return pins
