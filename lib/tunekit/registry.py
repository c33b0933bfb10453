"""Stage 04: compare the experiment's fine-tunes and register the best in the Model Registry.

The best run is the one with the highest `score` (`tunekit.objective`: the mean of its tuned
model's execution accuracy on the held-out rows and on the validation set; ties: the lower
eval loss). Its logged adapter model becomes a version of
`registered_model_name` with the alias `champion`, tagged with the run's evaluation. Registering
the same run again finds its version instead of creating another.

With the setting `promotion=rollout`, a new best that is not the champion gets the alias
`challenger` instead, and the champion stays until a rollout decides (`tunekit.promotion`); a
model with no champion yet gets one at once.
"""

from __future__ import annotations

from typing import Any

from tunekit.mlflow_record import SWEEP_ROLE_TAG
from tunekit.objective import SCORE, best_first
from tunekit.records import RegistryRecord
from tunekit.run import Run
from tunekit.settings import Settings
from tunekit.tracking import model_version_url, tracking_uri

CHAMPION = "champion"
CHALLENGER = "challenger"
DECISION_TAG = "tunekit.rollout"  # on a rollout's challenger: its decision and the reasons
METRICS = (
    SCORE,
    "tuned_execution_accuracy",
    "validation_tuned_execution_accuracy",
    "tuned_exact_match",
    "validation_tuned_exact_match",
    "base_execution_accuracy",
    "validation_base_execution_accuracy",
    "eval_loss",
    "train_loss",
)
PARAMS = ("max_steps", "learning_rate", "lora_r", "per_device_train_batch_size", "seed")


def champion_uri(settings: Settings) -> str:
    """`models:/<registered_model_name>@champion`: what stages 05 and 06 serve."""
    return f"models:/{settings.registered_model_name}@{CHAMPION}"


def compare_runs(run: Run, mlflow_client: Any) -> Any:
    """The experiment's finished, evaluated fine-tunes, best first (a pandas DataFrame; empty
    without a tracking server to read, `mlflow_client` None). A sweep's parent run, which
    repeats its best trial's metrics, is not a fine-tune."""
    import pandas as pd

    if mlflow_client is None:
        return pd.DataFrame(columns=["run_id", "run_name", *METRICS, *PARAMS])
    experiment_id = _experiment_id(run)
    found = mlflow_client.search_runs(
        [experiment_id],
        filter_string="attributes.status = 'FINISHED' and metrics.tuned_execution_accuracy >= 0",
        max_results=1000,
    )
    rows = [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            **{m: r.data.metrics.get(m) for m in METRICS},
            **{p: r.data.params.get(f"tunekit.{p}") for p in PARAMS},
        }
        for r in found
        if r.data.tags.get(SWEEP_ROLE_TAG) != "parent"
    ]
    return pd.DataFrame(best_first(rows), columns=["run_id", "run_name", *METRICS, *PARAMS])


def register_best(run: Run, mlflow_client: Any) -> RegistryRecord:
    """Register the best run's model (or the setting `pin_run_id`'s), alias it `champion`;
    record it."""
    pin_run_id = run.settings.pin_run_id
    candidates = compare_runs(run, mlflow_client)
    if pin_run_id:
        chosen = candidates[candidates["run_id"] == pin_run_id]
        if chosen.empty:
            raise ValueError(
                f"pin_run_id: {pin_run_id!r} is not a finished, evaluated fine-tune of experiment "
                f"{run.settings.experiment_name!r}; `tunekit.compare_runs(run)` lists them"
            )
    elif candidates.empty:
        raise RuntimeError(
            f"no finished, evaluated fine-tune in experiment {run.settings.experiment_name!r}: "
            "run stage 03 first"
        )
    else:
        chosen = candidates
    best = chosen.iloc[0].to_dict()
    name = run.settings.registered_model_name
    version, created = _version_for(mlflow_client, name, best["run_id"], _experiment_id(run))
    alias, champion = CHAMPION, version.version
    current = alias_version(mlflow_client, name, CHAMPION)
    said = mlflow_client.get_model_version(name, version.version).tags.get(DECISION_TAG, "")
    rejected = str(said).startswith("rolled back")
    if rejected and not pin_run_id and current is not None:
        # a rollout judged it on live numbers: the champion stays, unless the run is pinned
        print(f"tunekit: version {version.version} was rolled back by a rollout "
              f"({said}); the champion stays version {current.version}. "
              "Pin its run (pin_run_id) to try it again.", flush=True)  # fmt: skip
        alias, champion = "", current.version
    elif (run.settings.promotion == "rollout" and current is not None
          and current.version != version.version):  # fmt: skip
        alias, champion = CHALLENGER, current.version
    if alias:
        mlflow_client.set_registered_model_alias(name, alias, version.version)
    # promoted without a rollout: the version keeps one alias (asked only then)
    waiting = alias_version(mlflow_client, name, CHALLENGER) if alias == CHAMPION else None
    if waiting is not None and waiting.version == version.version:
        mlflow_client.delete_registered_model_alias(name, CHALLENGER)
    for metric in METRICS:
        if best.get(metric) is not None:
            mlflow_client.set_model_version_tag(
                name, version.version, metric, f"{best[metric]:.4f}"
            )
    mlflow_client.set_model_version_tag(name, version.version, "tunekit.run_id", best["run_id"])
    return run.state.update(
        "registry",
        {
            "registered_model_name": name,
            "version": int(version.version),
            "alias": alias,
            "champion_version": int(champion),
            "challenger_version": int(version.version) if alias == CHALLENGER else "",
            "model_uri": f"models:/{name}@{alias or CHAMPION}",
            "run_id": best["run_id"],
            "pinned": bool(pin_run_id),
            "created": created,
            "score": best[SCORE],
            "tuned_execution_accuracy": best["tuned_execution_accuracy"],
            "validation_tuned_execution_accuracy": best["validation_tuned_execution_accuracy"],
            "ui_url": model_version_url(tracking_uri(run), name, version.version),
        },
    )


def alias_version(client: Any, name: str, alias: str) -> Any:
    """The version `alias` names (None: the alias, or the model, is not there)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _version_for(client: Any, name: str, run_id: str, experiment_id: str) -> tuple[Any, bool]:
    """The registered version of `run_id`'s model: found, or created now."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="LoRA text-to-SQL adapters by tunekit")
    existing = [v for v in client.search_model_versions(f"name = '{name}'") if v.run_id == run_id]
    if existing:
        return existing[0], False
    models = client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    if not models:
        raise RuntimeError(f"run {run_id} logged no model: re-run its fine-tune (stage 03)")
    model_id = models[0].model_id
    version = client.create_model_version(
        name, f"models:/{model_id}", run_id=run_id, model_id=model_id
    )
    return version, True


def _experiment_id(run: Run) -> str:
    experiment_id = run.state.section("mlflow").get("experiment_id")
    if not experiment_id:
        raise RuntimeError("no MLflow experiment recorded for this run: run stage 02 first")
    return experiment_id
