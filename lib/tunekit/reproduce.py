"""`tunekit reproduce`: a recorded fine-tune again, from what its MLflow run holds.

The run's params give the training settings, its tags the kit's commit and the digests of its
rows (`tunekit.provenance`). The data must be the same (it refuses, naming the digests, before
anything trains) and so must the commit, unless told otherwise. The fine-tune then runs as any
other, into a new MLflow run tagged `tunekit.reproduces=<run id>`, and the metrics are compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tunekit import provenance
from tunekit.mlflow_record import REPRODUCES_TAG
from tunekit.records import FinetuneRecord, ReproduceRecord
from tunekit.run import Run
from tunekit.settings import Settings, SettingsError, load_settings
from tunekit.settings_groups import TrackingSettings, identity_fields

Compared = Literal[
    "tuned_execution_accuracy",
    "tuned_exact_match",
    "validation_tuned_execution_accuracy",
    "validation_tuned_exact_match",
]
COMPARED: tuple[Compared, ...] = (
    "tuned_execution_accuracy",
    "tuned_exact_match",
    "validation_tuned_execution_accuracy",
    "validation_tuned_exact_match",
)  # what must match, within tolerance
NOT_REPRODUCED = TrackingSettings.names()  # the new run's own: its experiment, sweep, origin


class ReproduceRefused(SettingsError):
    """What the recorded run was made from differs from what is here (data, code)."""


@dataclass(frozen=True)
class Recorded:
    """A finished fine-tune as MLflow holds it."""

    run_id: str
    values: dict[str, Any]  # its training settings
    tags: dict[str, str]
    metrics: dict[str, float]


def resolve_run_id(client: Any, ref: str) -> str:
    """A run id, or the run of a registered model: `models:/<name>@<alias>` or
    `models:/<name>/<version>`."""
    if not ref.startswith("models:/"):
        return ref
    name, at, alias = ref.removeprefix("models:/").partition("@")
    if at:
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, _, number = name.partition("/")
        version = client.get_model_version(name, number)
    if not version.run_id:
        raise ReproduceRefused(f"{ref}: version {version.version} names no MLflow run")
    return version.run_id


def recorded(client: Any, run_id: str) -> Recorded:
    """The run's training settings (its `tunekit.<name>` params), tags and metrics."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_run(run_id)
    except MlflowException as e:
        raise ReproduceRefused(f"run {run_id}: not found in MLflow ({e.message})") from None
    if found.info.status != "FINISHED":
        raise ReproduceRefused(f"run {run_id} is {found.info.status}: only a finished one")
    params = found.data.params
    values: dict[str, Any] = {}
    for name in identity_fields():
        if name in NOT_REPRODUCED or f"tunekit.{name}" not in params:
            continue
        value = params[f"tunekit.{name}"]
        if Settings.model_fields[name].annotation == list[str]:  # logged joined by ","
            value = [v for v in value.split(",") if v]
        values[name] = value
    if "model_id" not in values:
        raise ReproduceRefused(f"run {run_id} is not a tunekit fine-tune (no tunekit.* params)")
    return Recorded(run_id, values, dict(found.data.tags), dict(found.data.metrics))


def settings_for(run: Run, original: Recorded) -> Settings:
    """The reproduction's settings: the run's platform, the recorded training settings."""
    return load_settings(
        **{
            **run.settings.model_dump(),
            **original.values,
            "sweep_id": "",
            "reproduces": original.run_id,
        }
    )


def check(
    original: Recorded, rows: tuple[list[dict], list[dict]] | None, allow_other_commit: bool
) -> list[str]:
    """Refuse (ReproduceRefused) where the data or the code differ; the warnings otherwise."""
    warnings = []
    if rows is None:
        warnings.append("the data is not read here: its digests are not checked")
    else:
        for split, split_rows in zip(("train", "eval"), rows, strict=True):
            then = original.tags.get(provenance.data_tag(split))
            now = provenance.rows_digest(split_rows)
            if then is None:
                warnings.append(f"run {original.run_id} recorded no digest of its {split} rows")
            elif then != now:
                raise ReproduceRefused(
                    f"the {split} rows differ from those run {original.run_id} used: their "
                    f"digest was {then[:12]}, now {now[:12]} (dataset "
                    f"{original.values.get('dataset')!r}, {len(split_rows)} rows)"
                )
    then, now = original.tags.get("tunekit.git_commit", provenance.UNKNOWN), provenance.git_commit()
    if then != now:
        if not allow_other_commit:
            raise ReproduceRefused(
                f"run {original.run_id} was made by commit {then[:12]}, this kit is "
                f"{now[:12]}: check out {then[:12]}, or give --allow-other-commit"
            )
        warnings.append(f"another commit: {then[:12]} then, {now[:12]} now")
    if original.tags.get("tunekit.git_dirty") == "true":
        warnings.append(f"commit {then[:12]} had uncommitted changes when the run was made")
    for package, version in provenance.package_versions().items():
        recorded_version = original.tags.get(f"tunekit.package.{package}")
        if recorded_version and recorded_version != version:
            warnings.append(f"{package} {recorded_version} then, {version} now")
    return warnings


def compare(
    original: Recorded, result: FinetuneRecord, tolerance: float
) -> tuple[list[dict[str, Any]], bool]:
    """The compared metrics side by side, and whether each is within `tolerance`."""
    rows = []
    for name in COMPARED:
        then, now = original.metrics.get(name), result.get(name)
        delta = None if then is None or now is None else now - then
        rows.append(
            {
                "metric": name,
                "original": then,
                "reproduction": now,
                "delta": delta,
                "ok": delta is not None and abs(delta) <= tolerance,
            }
        )
    return rows, all(r["ok"] for r in rows)


def record(
    run: Run, original: Recorded, result: FinetuneRecord, tolerance: float, warnings: list[str]
) -> ReproduceRecord:
    """The reproduction `result` of `original` compared, recorded in the run's state
    (`reproduce`)."""
    table, matches = compare(original, result, tolerance)
    return run.state.update(
        "reproduce",
        {
            "run_id": original.run_id,
            "reproduction_run_id": result["mlflow_run_id"],
            "tag": f"{REPRODUCES_TAG}={original.run_id}",
            "metrics": table,
            "tolerance": tolerance,
            "matches": matches,
            "warnings": warnings,
        },
    )
