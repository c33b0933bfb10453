"""What a fine-tune records in MLflow: its run, tags, params, inputs, evaluation and model,
each through an MLflow outage (`tunekit.mlflow_outage`)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from tunekit import provenance
from tunekit.data import FILE_SUFFIXES
from tunekit.mlflow_outage import (
    DroppedBatches,
    MetricBuffer,
    MlflowUnavailable,
    bound_http_retries,
    replay_metrics,
    say,
    through_outage,
)
from tunekit.model_logging import log_adapter_once
from tunekit.prompts import build_prompt
from tunekit.settings import Settings

RUN_ID_FILE = "mlflow_run_id"
METRICS_FILE = "metrics.jsonl"  # the buffer of the run's metric points
EVALUATION_FILE = "evaluation.json"  # the evaluation by generation, kept for a re-run
# The per-row answers of each evaluation set: held-out rows, validation and test sets
TABLE_FILES = {
    "held_out": "evaluation/predictions.json",
    "validation": "evaluation/validation_predictions.json",
    "test": "evaluation/test_predictions.json",
}
SWEEP_TAG = "tunekit.sweep_id"  # a sweep's parent run and its trials carry the sweep's id
SWEEP_ROLE_TAG = "tunekit.sweep_role"  # "parent" or "trial"
PARENT_TAG = "mlflow.parentRunId"  # MLflow nests a run under the run this tag names
REPRODUCES_TAG = "tunekit.reproduces"


@dataclass(frozen=True)
class FinetuneRun:
    """The fine-tune's MLflow run and its metric buffer; its records wait for an MLflow that
    does not answer, up to `outage_s` seconds."""

    run_id: str
    experiment_id: str
    buffer: MetricBuffer
    outage_s: float
    resumed: bool  # an earlier attempt may have lost points
    dropped: DroppedBatches

    def log_inputs(self, settings: Settings, train_rows: list[dict], eval_rows: list[dict]):
        through_outage(
            "logging the datasets",
            lambda: log_inputs(settings, train_rows, eval_rows),
            self.outage_s,
        )

    def log_evaluation(self, evaluation: dict[str, Any]) -> None:
        """The evaluation's metrics and its per-row table, once however often this runs: the
        points carry the evaluation's own time, and MLflow's SQL store keeps an identical point
        once (mlflow/store/tracking/sqlalchemy_store.py `_log_metrics`)."""
        stamp = evaluation["timestamp"]
        points = [Metric(k, v, stamp, 0) for k, v in evaluation["metrics"].items()]

        def log() -> None:
            MlflowClient().log_batch(self.run_id, metrics=points)
            for name, table in evaluation["tables"].items():
                log_table_once(self.run_id, table, TABLE_FILES[name])

        through_outage("logging the evaluation", log, self.outage_s)

    def log_adapter(
        self, model: Any, tokenizer: Any, base: str, settings: Settings, example: dict[str, str]
    ) -> str:
        """The adapter as the run's one MLflow model (`log_adapter_once`); its URI."""
        return through_outage(
            "logging the adapter",
            lambda: log_adapter_once(
                self.experiment_id, self.run_id, model, tokenizer, base, settings, example
            ),
            self.outage_s,
        )


@contextmanager
def finetune_run(settings: Settings, output_dir: Path, resume: bool) -> Iterator[FinetuneRun]:
    """Start the fine-tune's MLflow run, or resume the one recorded in `output_dir`.

    A resumed run keeps its id, params and inputs; its metrics continue from the checkpoint.
    It ends FINISHED once MLflow holds every buffered metric point. If MLflow stays away past
    `mlflow_outage_s`, the trainer exits (status 1) saying how to resume into the same run.
    """
    bound_http_retries()
    try:
        tracked = _start_run(settings, output_dir, resume)
    except MlflowUnavailable as e:
        raise SystemExit(f"tunekit: {e}. {resume_hint(settings, output_dir, None)}") from e
    try:
        yield tracked
        mlflow.flush_async_logging()  # the queue delivered what it could; replay the rest
        if tracked.resumed or tracked.dropped.count:  # else MLflow has every point
            replayed = through_outage(
                "logging the metric points it missed",
                lambda: replay_metrics(tracked.buffer, tracked.run_id),
                tracked.outage_s,
            )
            if replayed:
                say(f"logged {replayed} metric points again that MLflow had missed")
        through_outage(
            "ending the run", lambda: _end_run(tracked.run_id, "FINISHED"), tracked.outage_s
        )
    except MlflowUnavailable as e:
        # no more retries: mark the run FAILED if MLflow happens to answer, then stop
        os.environ.update(
            {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
        )
        with suppress(Exception):
            _end_run(tracked.run_id, "FAILED")
        with suppress(Exception):
            mlflow.flush_async_logging()
        raise SystemExit(
            f"tunekit: {e}. {resume_hint(settings, output_dir, tracked.run_id)}"
        ) from e
    except BaseException:
        with suppress(Exception):
            _end_run(tracked.run_id, "FAILED")
        raise
    finally:
        logging.getLogger(DroppedBatches.LOGGER).removeHandler(tracked.dropped)


def _start_run(settings: Settings, output_dir: Path, resume: bool) -> FinetuneRun:
    """The run started (tags and params logged), or the recorded one resumed."""
    outage_s = settings.mlflow_outage_s
    through_outage(
        "opening the experiment", lambda: _open_experiment(settings.experiment_name), outage_s
    )
    mlflow.config.enable_async_logging(True)
    mlflow.set_system_metrics_sampling_interval(5)
    id_file = output_dir / RUN_ID_FILE
    run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
    parent = {} if run_id or not settings.sweep_id else {PARENT_TAG: sweep_parent(settings)}
    info = mlflow.start_run(run_id=run_id, log_system_metrics=True, tags=parent).info
    id_file.write_text(info.run_id)
    buffer = MetricBuffer(output_dir / METRICS_FILE)
    tracked = FinetuneRun(
        info.run_id, info.experiment_id, buffer, outage_s, run_id is not None, DroppedBatches()
    )
    logging.getLogger(DroppedBatches.LOGGER).addHandler(tracked.dropped)
    if run_id is None:
        tracked.buffer.clear()  # points an earlier run left in this folder are not this one's
        through_outage("logging the tags and params", lambda: _log_settings(settings), outage_s)
    return tracked


def _open_experiment(name: str) -> None:
    """The experiment as the active one, of the model-training kind if it has none."""
    from tunekit.tracking import mark_model_training

    mark_model_training(MlflowClient(), mlflow.set_experiment(name))


def sweep_parent(settings: Settings) -> str:
    """The id of the parent run of sweep `settings.sweep_id` (its driver created it)."""
    experiment = MlflowClient().get_experiment_by_name(settings.experiment_name)
    found = MlflowClient().search_runs(
        [experiment.experiment_id] if experiment else [],
        filter_string=f"tags.`{SWEEP_TAG}` = '{settings.sweep_id}' "
        f"and tags.`{SWEEP_ROLE_TAG}` = 'parent'",
        max_results=1,
    )
    if not found:
        raise SystemExit(
            f"tunekit: sweep {settings.sweep_id} has no parent run in experiment "
            f"{settings.experiment_name!r}: start trials with `tunekit sweep`"
        )
    return found[0].info.run_id


def resume_hint(settings: Settings, output_dir: Path, run_id: str | None) -> str:
    """Where the training stands and the commands that finish it (in the same MLflow run)."""
    from tunekit.train_parts import last_complete_checkpoint

    checkpoint = last_complete_checkpoint(output_dir / "checkpoints")
    saved = (
        f"The training is saved at {Path(checkpoint).name}"
        if checkpoint
        else "Nothing is saved yet"
    )
    local = settings.profile == "local" and output_dir.parent.name == "finetune"
    run_dir = output_dir.parents[1] if local else "<the run's directory>"
    same_run = f": it resumes into the same MLflow run {run_id}" if run_id else ""
    return (
        f"{saved}; start MLflow (`tunekit run --stages 02 --run-dir {run_dir}`) and re-run "
        f"stage 03 (`tunekit run --stages 03 --run-dir {run_dir}`){same_run}"
    )


def _log_settings(settings: Settings) -> None:
    mlflow.set_tags(run_tags(settings))
    mlflow.log_params(run_params(settings))


def _end_run(run_id: str, status: str) -> None:
    """End the run: through `mlflow.end_run` while it is the active run (that stops its system
    metrics too), else (a retry: end_run lets go of the run before it calls MLflow) directly."""
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status)
    else:
        MlflowClient().set_terminated(run_id, status)


def run_tags(settings: Settings) -> dict[str, str]:
    """What the run is and what reproduces it (`tunekit.provenance`); nothing secret."""
    from tunekit.provenance import kit_version

    tags = {
        "tunekit.profile": settings.profile,
        "tunekit.model_id": settings.model_id,
        "tunekit.dataset": settings.dataset,
        "tunekit.version": kit_version(),
        "tunekit.git_commit": provenance.git_commit(),
        "tunekit.git_dirty": provenance.git_dirty(),
        **{f"tunekit.package.{p}": v for p, v in provenance.package_versions().items()},
    }
    if settings.sweep_id:
        tags |= {SWEEP_TAG: settings.sweep_id, SWEEP_ROLE_TAG: "trial"}
    if settings.reproduces:
        tags[REPRODUCES_TAG] = settings.reproduces
    return tags


def run_params(settings: Settings) -> dict[str, Any]:
    """Every setting, flattened, as `tunekit.<name>` (settings hold no secrets); the number of
    training processes and the examples per optimizer step over all of them."""
    from tunekit.distributed import effective_batch_size

    return {
        **{
            f"tunekit.{name}": ",".join(value) if isinstance(value, list) else value
            for name, value in settings.model_dump().items()
        },
        "world_size": settings.world_size,
        "effective_batch_size": effective_batch_size(settings),
    }


def log_inputs(settings: Settings, train_rows: list[dict], eval_rows: list[dict]) -> None:
    """Both splits as MLflow datasets (source and digest), and each split's full digest as a
    tag (`provenance.rows_digest`)."""
    import pandas as pd
    from mlflow.data.pandas_dataset import from_pandas

    source = dataset_source(settings)
    for name, rows, context in (
        ("train", train_rows, "training"),
        ("eval", eval_rows, "evaluation"),
    ):
        dataset = from_pandas(pd.DataFrame(rows), source=source, name=name)
        mlflow.log_input(dataset, context=context)
        mlflow.set_tag(provenance.data_tag(name), provenance.rows_digest(rows))


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
        # MLflow makes a source class per artifact scheme at import and registers it, not as a
        # module attribute (mlflow/data/artifact_dataset_sources.py): the registry resolves one
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        return resolve_dataset_source(str(Path(settings.dataset).resolve()))
    from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

    return HuggingFaceDatasetSource(path=settings.dataset, split="train")


def evaluate_models(
    rows: list[dict], predictions: dict[str, list[str]], seed: int, prefix: str = ""
) -> dict:
    """Exact match and execution accuracy per model (`metrics`, named `<prefix><model>_...`;
    for rows with a `style`, the accuracy per style too: `<prefix><style>_<model>_...`), a
    per-row `table` (its columns as lists), and when (`timestamp`, ms: the time of its metric
    points)."""
    from tunekit.evaluate import evaluate

    table: dict[str, list] = {
        "question": [r["question"] for r in rows],
        "context": [r["context"] for r in rows],
        "prompt": [build_prompt(r["question"], r["context"]) for r in rows],
        "gold": [r["answer"] for r in rows],
    }
    styles = [r.get("style", "") for r in rows]
    if any(styles):
        table["style"] = styles
    metrics = {}
    for model, predicted in predictions.items():
        result = evaluate(rows, predicted, seed)
        metrics[f"{prefix}{model}_exact_match"] = result["exact_match"]
        metrics[f"{prefix}{model}_execution_accuracy"] = result["execution_accuracy"]
        # rows left out: not judgeable
        metrics[f"{prefix}{model}_gold_errors"] = result["gold_errors"]
        for style in sorted(set(styles) - {""}):
            judged = [s["execution"] for s, k in zip(result["scores"], styles, strict=True)
                      if k == style and not s["gold_error"]]  # fmt: skip
            name = style.replace("-", "_")
            metrics[f"{prefix}{name}_{model}_execution_accuracy"] = (
                sum(judged) / len(judged) if judged else 0.0
            )
        table[f"{model}_prediction"] = list(predicted)
        table[f"{model}_exact"] = [s["exact"] for s in result["scores"]]
        table[f"{model}_correct"] = [s["execution"] for s in result["scores"]]
    return {"metrics": metrics, "table": table, "timestamp": int(time.time() * 1000)}


def save_evaluation(output_dir: Path, evaluation: dict[str, Any]) -> dict[str, Any]:
    """Keep the evaluation in the job dir (written whole, or not at all); it is returned."""
    path = output_dir / EVALUATION_FILE
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(evaluation))
    partial.replace(path)
    return evaluation


def saved_evaluation(output_dir: Path) -> dict[str, Any] | None:
    """The evaluation an earlier attempt of this job kept, if any: a re-run after an MLflow
    outage logs it instead of generating again."""
    path = output_dir / EVALUATION_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def log_table_once(run_id: str, table: dict[str, list], artifact_file: str) -> None:
    """A per-row table as the run's `artifact_file`, unless the run has it (MLflow's log_table
    appends to an existing table: mlflow/tracking/client.py)."""
    import pandas as pd

    client = MlflowClient()
    folder = artifact_file.rsplit("/", 1)[0]
    if artifact_file not in {a.path for a in client.list_artifacts(run_id, folder)}:
        client.log_table(run_id, pd.DataFrame(table), artifact_file=artifact_file)
