"""Pictures of a run, drawn from what MLflow recorded."""

from __future__ import annotations

from typing import Any

from tunekit import progress
from tunekit.objective import score
from tunekit.run import Run
from tunekit.stages import compare_runs, tracking_client
from tunekit.tracking import tracking_uri, ui_url


def training_curves(run: Run) -> Any:
    """Loss and learning rate of the run's fine-tune, step by step (None where the backend
    has no tracking server to read)."""
    if (mlflow_client := tracking_client(run)) is None:
        return None
    import matplotlib.pyplot as plt

    run_id = _finetune_run_id(run)
    fig, (loss_ax, lr_ax) = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, key, title in (
        (loss_ax, "loss", "training loss"),
        (lr_ax, "learning_rate", "learning rate"),
    ):
        history = sorted(mlflow_client.get_metric_history(run_id, key), key=lambda m: m.step)
        ax.plot([m.step for m in history], [m.value for m in history], marker=".")
        ax.set(title=title, xlabel="step")
    loss_ax.set_yscale("log")
    return _done(fig)


SETS = (
    ("", "held-out rows"),
    ("validation_", "validation (chooses)"),
    ("test_", "test (reports only)"),
)


def base_vs_tuned(run: Run) -> Any:
    """Execution accuracy of the base and the tuned model, answering as the servers do, and of
    the tuned model answering the other way (free or constrained), on the held-out rows, the
    validation set and the test set (`tunekit.eval_sets`), side by side."""
    if (mlflow_client := tracking_client(run)) is None:
        return None
    import matplotlib.pyplot as plt

    metrics = mlflow_client.get_run(_finetune_run_id(run)).data.metrics
    other = "tuned_free" if "tuned_free_execution_accuracy" in metrics else "tuned_constrained"
    models = (("base", "base"), ("tuned", "tuned"), (other, other.replace("_", ", ")))
    fig, axes = plt.subplots(1, len(SETS), figsize=(12, 3.2), sharey=True)
    for ax, (prefix, title) in zip(axes, SETS, strict=True):
        values = [metrics.get(f"{prefix}{m}_execution_accuracy", 0.0) for m, _ in models]
        bars = ax.bar(range(len(models)), values, color=("tab:gray", "tab:green", "tab:olive"))
        ax.bar_label(bars, fmt="{:.0%}")
        ax.set_xticks(range(len(models)), [label for _, label in models])
        ax.set(ylim=(0, 1.1), title=title)
    axes[0].set_ylabel("execution accuracy")
    fig.suptitle(f"score {metrics.get('score', float('nan')):.0%} (mean of the tuned model's "
                 "held-out and validation execution accuracy; the test set chooses nothing)",
                 fontsize=9)  # fmt: skip
    return _done(fig)


def evaluation_summary(metrics: dict[str, Any]) -> Any:
    """Execution accuracy per set (rows) and model (columns) of a fine-tune's metrics (stage
    03's result): a pandas DataFrame. `tuned, free` (or `tuned, constrained`) is the tuned model
    answering the other way than the servers."""
    import pandas as pd

    other = "tuned_free" if "tuned_free_execution_accuracy" in metrics else "tuned_constrained"
    models = {"base": "base", "tuned": "tuned", other: other.replace("_", ", ")}
    table = {
        title: {
            label: metrics.get(f"{prefix}{m}_execution_accuracy") for m, label in models.items()
        }
        for prefix, title in SETS
    }
    frame = pd.DataFrame(table).T
    frame["chooses"] = ["no (in distribution)", "yes", "no (reports)"]
    return frame


def runs_compared(run: Run, run_ids: list[str] | None = None) -> Any:
    """The experiment's evaluated fine-tunes (or `run_ids` of them): execution accuracy and
    eval loss, best first."""
    table = compare_runs(run)
    if table.empty:
        return None
    return _runs_figure(table if run_ids is None else table[table.run_id.isin(run_ids)])


def _runs_figure(table: Any) -> Any:
    """Execution accuracy and eval loss of the runs of `table` (compare_runs' rows)."""
    import matplotlib.pyplot as plt

    labels = [
        f"{name}\n{run_id[:8]}" for name, run_id in zip(table.run_name, table.run_id, strict=True)
    ]
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 3.4))
    where, width = range(len(labels)), 0.4
    for shift, column, name, color in (
        (-width / 2, "tuned_execution_accuracy", "held-out rows", "tab:green"),
        (width / 2, "validation_tuned_execution_accuracy", "validation set", "tab:blue"),
    ):
        values = table[column].fillna(0)
        bars = acc_ax.bar([x + shift for x in where], values, width, label=name, color=color)
        acc_ax.bar_label(bars, fmt="{:.0%}", fontsize=7)
    acc_ax.set_xticks(list(where), labels)
    acc_ax.set(title="tuned execution accuracy (score: their mean)", ylim=(0, 1.15))
    acc_ax.legend(fontsize=7, loc="upper right")
    loss_ax.bar(labels, table.eval_loss, color="tab:orange")
    loss_ax.set(title="eval loss")
    for ax in (acc_ax, loss_ax):
        ax.tick_params(axis="x", labelsize=7)
    return _done(fig)


def sweep_trials(run: Run) -> Any:
    """The run's last sweep, read from MLflow: the objective of each trial against each swept
    setting (failed trials as red crosses at 0), the best one circled."""
    if (mlflow_client := tracking_client(run)) is None:
        return None
    import matplotlib.pyplot as plt

    from tunekit.mlflow_record import PARENT_TAG

    sweep = run.state.section("sweep")
    if not sweep.get("parent_run_id"):
        raise RuntimeError("no sweep recorded for this run: run one with `tunekit sweep`")
    experiment_id = run.state.section("mlflow")["experiment_id"]
    trials = mlflow_client.search_runs(
        [experiment_id], f"tags.`{PARENT_TAG}` = '{sweep['parent_run_id']}'"
    )
    names = list(sweep["space"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for trial in trials:
            value = trial.data.params.get(f"tunekit.{name}")
            accuracy = score(trial.data.metrics)
            if trial.info.status != "FINISHED" or accuracy is None:
                ax.scatter([value], [0], marker="x", color="tab:red")
                continue
            best = trial.info.run_id == sweep.get("best_run_id")
            ax.scatter([value], [accuracy], color="tab:green", s=80 if best else 30,
                       edgecolors="black" if best else "none")  # fmt: skip
        ax.set(title=name, ylim=(-0.05, 1.05), ylabel="score")
    fig.suptitle(f"sweep {sweep['id']}: {len(trials)} trials")
    return _done(fig)


def rollout(record: dict[str, Any]) -> Any:
    """Champion and challenger side by side on the live numbers a rollout decided on
    (`tunekit.rollout`'s record): the split of the requests, validation accuracy, p95
    latency, failure rate."""
    import matplotlib.pyplot as plt

    numbers = record["numbers"]
    panels = [("requests (the split)", "requests", "{:.0f}"),
              ("validation accuracy", "accuracy", "{:.0%}"), ("p95 latency (s)", "p95_s", "{:.3f}"),
              ("failure rate", "error_rate", "{:.1%}")]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 3))
    for ax, (title, key, shown) in zip(axes, panels, strict=True):
        values = [numbers.get(f"{who}_{key}") or 0.0 for who in ("champion", "challenger")]
        bars = ax.bar(["champion", "challenger"], values, color=["#4285F4", "#F4B400"])
        ax.bar_label(bars, [shown.format(v) for v in values], fontsize=8)
        ax.set_title(title, fontsize=9)
    said = "; ".join(record["reasons"]) or "every bar cleared"
    requests = numbers.get("challenger_requests")
    title = f"version {record['challenger_version']} {record['verdict']}: {said}"
    fig.suptitle(f"{title} ({requests} challenger requests)", fontsize=9)
    return _done(fig)


def run_link(run: Run) -> str:
    """The fine-tune's page in the MLflow UI."""
    finetune = run.state.section("finetune")
    experiment_id = finetune.get("experiment_id") or run.state.section("mlflow")["experiment_id"]
    return ui_url(tracking_uri(run), experiment_id, f"runs/{finetune['mlflow_run_id']}")


def _done(fig: Any) -> Any:
    """Lay out and detach from pyplot: the notebook shows the returned figure once, not twice."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    plt.close(fig)
    return fig


def _finetune_run_id(run: Run) -> str:
    run_id = run.state.section("finetune").get("mlflow_run_id")
    if not run_id:
        raise RuntimeError("no finished fine-tune recorded for this run: run stage 03 first")
    return run_id


def choose_runs(run: Run) -> Any:
    """Tick the runs to compare and the plot follows (ipywidgets). Headless, or with no person
    at the notebook, it is the static plot of every run."""
    table = compare_runs(run)  # once: the picker redraws from it
    if table.empty:
        return None
    if not progress.interactive():
        return _runs_figure(table)
    import ipywidgets as widgets
    from IPython.display import display

    options = [(f"{r.run_name}  {r.score:.0%}", r.run_id) for r in table.itertuples()]
    picker = widgets.SelectMultiple(
        options=options,
        value=[run_id for _, run_id in options[:5]],
        rows=min(8, max(len(options), 1)),
        description="runs",
    )
    figure = widgets.Output()

    def draw(*_: Any) -> None:
        with figure:
            figure.clear_output(wait=True)
            display(_runs_figure(table[table.run_id.isin(picker.value)]))

    picker.observe(draw, "value")
    draw()
    return widgets.VBox([picker, figure])
