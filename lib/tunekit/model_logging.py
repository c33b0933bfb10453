"""The fine-tune's adapter as its run's one MLflow model: the kit's pyfunc model (base + LoRA
adapter, `tunekit.pyfunc_model`) with pinned requirements, logged once however often a try runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from tunekit import provenance
from tunekit.prompts import build_prompt
from tunekit.settings import Settings

MODEL_NAME = "model"
MODEL_PACKAGES = ("torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors",
                  "sqlglot", "xgrammar")  # fmt: skip


def log_adapter_once(
    experiment_id: str,
    run_id: str,
    model: Any,
    tokenizer: Any,
    base: str,
    settings: Settings,
    example: dict[str, str],
) -> str:
    """Run `run_id`'s adapter model: the READY one an earlier try logged, else logged now (after
    deleting a half-logged one, so that the run holds one model); its URI."""
    client = MlflowClient()
    models = [
        m
        for m in client.search_logged_models(
            [experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
        if m.name == MODEL_NAME
    ]
    for found in models:
        if str(found.status) == "READY":
            return f"models:/{found.model_id}"
    for found in models:
        client.delete_logged_model(found.model_id)
    return log_adapter(model, tokenizer, base, settings, example)


def log_adapter(
    model: Any, tokenizer: Any, base: str, settings: Settings, example: dict[str, str]
) -> str:
    """Log the LoRA adapter (not the base weights) as the kit's pyfunc model
    (`tunekit.pyfunc_model`: the servers' generation, constrained as `constrained_decoding`
    says); its URI. A local base is named by its path; MLflow then also checks that the logged
    model loads and answers the example (a Hub base is not loaded twice on the training GPU)."""
    import shutil
    import tempfile

    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from tunekit import pyfunc_model

    signature = ModelSignature(
        inputs=Schema([ColSpec("string")]), outputs=Schema([ColSpec("string")])
    )
    with tempfile.TemporaryDirectory() as scratch:
        adapter = Path(scratch) / pyfunc_model.ADAPTER
        model.save_pretrained(adapter)
        tokenizer.save_pretrained(adapter)
        code = Path(scratch) / "tunekit"
        code.mkdir()
        for name in pyfunc_model.CODE:
            shutil.copyfile(Path(pyfunc_model.__file__).with_name(name), code / name)
        local = Path(base).is_dir()
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(pyfunc_model.ENTRY),
            artifacts={pyfunc_model.ADAPTER: str(adapter)},
            code_paths=[str(code)],
            model_config={
                "base_model": base,
                "max_new_tokens": settings.eval_max_new_tokens,
                "constrained": settings.constrained_decoding,
                "free_literals": settings.free_literals,
            },
            signature=signature,
            input_example=[build_prompt(example["question"], example["context"])]
            if local
            else None,
            pip_requirements=pip_requirements(),
        )
    return info.model_uri


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model (inferring them imports half of PyPI)."""
    versions = provenance.package_versions(MODEL_PACKAGES)
    return [f"mlflow=={mlflow.__version__}", *(f"{p}=={v}" for p, v in versions.items())]
