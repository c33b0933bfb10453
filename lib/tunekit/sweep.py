"""`tunekit sweep`: fine-tunes as the trials of one search, each an ordinary fine-tune tracked
as a child run of the sweep's MLflow parent run.

The search space is a list of values per training setting (`--grid lora_r=8,16`). Locally,
Optuna's grid, random or TPE sampler picks the trials and they run one after another; on GKE, a
Katib Experiment runs them as the fine-tune's Job. Either way the objective is the tuned model's
execution accuracy on the held-out rows (ties: the lower eval loss, as stage 04 ranks runs), a
failed trial is recorded as failed and the others go on, and the parent run gets the best trial's
metrics and a table of every trial. A sweep is named by a digest of its base settings and its
search (`Sweep.id`): running the same one again reuses its finished trials (the fine-tune's own
rule) and its parent run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from tunekit.mlflow_record import PARENT_TAG, SWEEP_ROLE_TAG, SWEEP_TAG
from tunekit.objective import COMPONENTS, OBJECTIVE, SCORE, rank_key
from tunekit.records import SweepRecord
from tunekit.run import Run
from tunekit.settings import Settings, SettingsError, load_settings
from tunekit.settings_groups import TrackingSettings, identity_fields

Sampler = Literal["grid", "random", "tpe"]
SAMPLERS: tuple[str, ...] = ("grid", "random", "tpe")


def default_space(base: Settings) -> dict[str, tuple[str, ...]]:
    """What `tunekit sweep` searches when given no --grid: the LoRA rank and the learning rate,
    each at half the base settings' and at theirs (local profile: r 8,16 and 1e-3,2e-3; gke:
    r 8,16 and 1e-4,2e-4). `-p` moves the base, `--grid` replaces the space."""
    return {
        "lora_r": (str(max(1, base.lora_r // 2)), str(base.lora_r)),
        "learning_rate": (f"{base.learning_rate / 2:g}", f"{base.learning_rate:g}"),
    }


# Settings a trial may not vary: the tracking group's, which name the experiment and the sweep.
FIXED = TrackingSettings.names()
TABLE_FILE = "sweep/trials.json"


def searchable() -> list[str]:
    """The settings a sweep may vary: those of a fine-tune's identity (they shape the
    result), but for the ones that name its experiment and the sweep."""
    return [n for n in identity_fields() if n not in FIXED]


def parse_grid(items: list[str]) -> dict[str, tuple[str, ...]]:
    """`["lora_r=8,16", ...]` as {setting: values}; a clear SettingsError for what is not."""
    space: dict[str, tuple[str, ...]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        choices = tuple(v.strip() for v in values.split(",") if v.strip())
        if not sep or not key or not choices:
            raise SettingsError(f"--grid {item!r}: expected SETTING=V1,V2,... e.g. lora_r=8,16")
        if key not in searchable():
            raise SettingsError(
                f"--grid {key}: not a setting a sweep can vary; these can: "
                f"{', '.join(searchable())}"
            )
        if key in space:
            raise SettingsError(f"--grid {key}: given twice")
        if len(set(choices)) != len(choices):
            raise SettingsError(f"--grid {key}: a value is repeated in {values!r}")
        space[key] = choices
    return space


@dataclass(frozen=True)
class Sweep:
    """A search over `space` from the `base` settings: its trials, its id, its parent run."""

    base: Settings
    space: dict[str, tuple[str, ...]] = field(default_factory=dict)  # empty: default_space
    sampler: Sampler = "grid"
    trials: int = 0  # 0: the grid's size
    seed: int = 0
    parallel: int = 1  # trials at once (Katib's parallelTrialCount; locally one at a time)

    def __post_init__(self) -> None:
        if not self.space:
            object.__setattr__(self, "space", default_space(self.base))
        if self.sampler not in SAMPLERS:
            raise SettingsError(f"--sampler {self.sampler!r}: one of {', '.join(SAMPLERS)}")
        if self.trials < 0 or self.parallel < 1:
            raise SettingsError("--trials must be 0 or more and --parallel 1 or more")
        for values in self.grid():  # every value a trial would get is a valid setting
            self.trial_settings(values)

    @property
    def grid_size(self) -> int:
        return len(self.grid())

    @property
    def trial_count(self) -> int:
        return self.trials or self.grid_size

    @property
    def id(self) -> str:
        """`sw-<digest>` of the base fine-tune (its job name: the training settings) and the
        search."""
        shaping = {
            "base": self.base.model_copy(update={"sweep_id": ""}).finetune_job,
            "space": self.space,
            "search": [self.sampler, self.trial_count, self.seed],
        }
        digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()
        return f"sw-{digest[:10]}"

    def grid(self) -> list[dict[str, str]]:
        """Every combination of the space's values."""
        combos = itertools.product(*self.space.values())
        return [dict(zip(self.space, values, strict=True)) for values in combos]

    def trial_settings(self, values: dict[str, Any]) -> Settings:
        """The settings of the trial with `values`: the base with them over it, in this sweep."""
        try:
            return load_settings(**{**self.base.model_dump(), **values, "sweep_id": self.id})
        except SettingsError as e:
            raise SettingsError(f"{e}\n  (in the sweep's trial {values})") from None

    def tags(self) -> dict[str, str]:
        """The parent run's tags: the sweep's id and its search."""
        return {
            SWEEP_TAG: self.id,
            SWEEP_ROLE_TAG: "parent",
            "tunekit.sweep.space": json.dumps(self.space),
            "tunekit.sweep.sampler": self.sampler,
            "tunekit.sweep.trials": str(self.trial_count),
            "tunekit.sweep.seed": str(self.seed),
        }


def optuna_sampler(sweep: Sweep) -> Any:
    """Optuna's sampler for the sweep (seeded: the same sweep asks the same trials)."""
    import optuna

    if sweep.sampler == "grid":
        return optuna.samplers.GridSampler(
            {k: list(v) for k, v in sweep.space.items()}, seed=sweep.seed
        )
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=sweep.seed)
    return optuna.samplers.TPESampler(seed=sweep.seed, n_startup_trials=min(4, sweep.trial_count))


def failure(error: Exception) -> str:
    """A failed trial in a line: the fine-tune's own last error line where it has one."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line.split(":")[0]]
    return (errors or lines or [type(error).__name__])[-1]


def parent_run(run: Run, client: Any, sweep: Sweep) -> str:
    """The sweep's parent run, RUNNING: found by its id (a re-run of the sweep), else new."""
    experiment_id = run.state.section("mlflow")["experiment_id"]
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{SWEEP_TAG}` = '{sweep.id}' and tags.`{SWEEP_ROLE_TAG}` = 'parent'",
        max_results=1,
    )
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    return client.create_run(experiment_id, run_name=sweep.id, tags=sweep.tags()).info.run_id


def trials_table(run: Run, client: Any, sweep: Sweep, parent_id: str) -> list[dict[str, Any]]:
    """Every trial run of the sweep: its run id, status, parameters and objective, best first
    (the finished ones by `objective.rank_key`, then the others)."""
    experiment_id = run.state.section("mlflow")["experiment_id"]
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{SWEEP_TAG}` = '{sweep.id}' and tags.`{SWEEP_ROLE_TAG}` = 'trial'"
        f" and tags.`{PARENT_TAG}` = '{parent_id}'",
        max_results=1000,
    )
    rows = [
        {
            "run_id": r.info.run_id,
            "status": r.info.status,
            **{k: r.data.params.get(f"tunekit.{k}") for k in sweep.space},
            **{m: r.data.metrics.get(m) for m in (*OBJECTIVE, *COMPONENTS)},
        }
        for r in found
    ]
    return sorted(rows, key=lambda row: rank_key(row, scored=row["status"] == "FINISHED"))


def summarize(run: Run, client: Any, sweep: Sweep, parent_id: str) -> SweepRecord:
    """Log the best trial's metrics and the table of trials on the parent run and end it
    (FINISHED if a trial finished, else FAILED); record the sweep in the run's state."""
    from mlflow.entities import Metric

    from tunekit.registry import METRICS

    table = trials_table(run, client, sweep, parent_id)
    finished = [t for t in table if t["status"] == "FINISHED" and t[SCORE] is not None]
    best = finished[0] if finished else None
    if best:
        metrics = client.get_run(best["run_id"]).data.metrics
        # now, not a fixed time: MLflow's latest value of a metric is the one with the highest
        # (step, timestamp, value) (mlflow/store/tracking/sqlalchemy_store.py
        # `_update_latest_metrics_if_necessary`), so a re-run whose best changed logs a newer
        # point than the last summary's, or a larger old value would stay
        stamp = int(time.time() * 1000)
        client.log_batch(
            parent_id,
            metrics=[Metric(m, metrics[m], stamp, 0) for m in METRICS if m in metrics],
        )
        client.set_tag(parent_id, "tunekit.sweep.best_run_id", best["run_id"])
    client.log_dict(parent_id, table, TABLE_FILE)
    client.set_terminated(parent_id, "FINISHED" if best else "FAILED")
    record: SweepRecord = {
        "id": sweep.id,
        "parent_run_id": parent_id,
        "space": sweep.space,
        "sampler": sweep.sampler,
        "trials": table,
        "finished": len(finished),
        "failed": sum(t["status"] == "FAILED" for t in table),
        "best_run_id": best["run_id"] if best else None,
    }
    if best:
        record["score"] = best[SCORE]
    return run.state.update("sweep", record)
