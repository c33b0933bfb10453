"""The `tunekit` command: run the notebook series, stop what it left, reopen the MLflow UI."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tunekit.local_services import running_services, stop_all
from tunekit.run import claim_run, list_runs, open_run, recorded_run
from tunekit.run_lock import RunBusyError
from tunekit.settings import GROUPS, Settings, SettingsError, load_settings

app = typer.Typer(
    help="Fine-tune Gemma-2 with LoRA as tracked MLflow experiments; run the notebook series.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)

ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "-p",
        "--param",
        metavar="KEY=VALUE",
        help="A setting for this run, e.g. -p experiment_name=demo (repeatable). "
        "`tunekit settings` lists them.",
    ),
]
ProfileOpt = Annotated[str | None, typer.Option(help="local (default) or gke.")]
RunDirOpt = Annotated[Path | None, typer.Option(help="The run directory; default: a new run.")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def parse_params(params: list[str] | None, profile: str | None) -> dict[str, Any]:
    """`-p key=value` pairs (and --profile) as a dict; values are validated by Settings."""
    values: dict[str, Any] = {}
    for item in params or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise _fail(f"-p {item!r}: expected KEY=VALUE, e.g. -p experiment_name=demo")
        values[key.strip()] = value
    if profile:
        if values.get("profile", profile) != profile:
            raise _fail(f"profile: --profile {profile} contradicts -p profile={values['profile']}")
        values["profile"] = profile
    return values


@app.command()
def run(
    profile: ProfileOpt = None,
    stages: Annotated[str, typer.Option(help="'all', a range '01-07' or a list '01,02'.")] = "all",
    param: ParamOpt = None,
    run_dir: RunDirOpt = None,
    notebooks: Annotated[Path | None, typer.Option(help="Notebook directory.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Echo cell output.")] = False,
) -> None:
    """Execute the numbered notebooks in order, headless, into the run directory.

    One at a time per run directory: another one running on it is named and this one exits
    with code 3."""
    from tunekit.series import find_notebooks_dir, parse_stages, run_series

    values = parse_params(param, profile)
    with ExitStack() as held:
        try:
            selected = parse_stages(stages)
            notebooks_dir = (notebooks or find_notebooks_dir()).resolve()
            missing = [s for s in selected if not (notebooks_dir / f"{s}.ipynb").is_file()]
            if missing:
                raise FileNotFoundError(
                    f"stages: no notebook for {', '.join(missing)} in {notebooks_dir}"
                )
            the_run, lock = held.enter_context(
                claim_run(run_dir or "", f"tunekit run --stages {stages}", **values)
            )
        except RunBusyError as e:
            raise _fail(str(e), code=3) from None
        except (SettingsError, ValueError, FileNotFoundError) as e:
            raise _fail(str(e)) from None

        console.print(
            f"Run [bold]{the_run.id}[/] · profile {the_run.settings.profile} · "
            f"stages {', '.join(selected)}",
            highlight=False,
        )
        overrides = {k: getattr(the_run.settings, k) for k in values if k != "profile"}
        try:
            results = run_series(
                the_run, selected, notebooks_dir, overrides, console, verbose, lock.child_env()
            )
        except KeyboardInterrupt:
            console.print("[red]Interrupted.[/] `make down` stops what the run left running.")
            raise typer.Exit(130) from None

    table = Table("stage", "status", "seconds", "executed notebook", title="tunekit run")
    for r in results:
        color = "green" if r.status == "ok" else "red"
        table.add_row(
            r.stage,
            f"[{color}]{r.status}[/]",
            f"{r.seconds:.1f}",
            str(r.notebook.relative_to(the_run.dir)),
        )
    console.print(table)
    _print_where(the_run)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)


def _print_where(the_run: Any) -> None:
    """Where everything of a run is, and what is still running."""
    mlflow = the_run.state.section("mlflow")
    cluster = the_run.state.section("cluster")
    up = running_services(the_run)
    console.print(f"Run directory: {the_run.dir}", highlight=False)
    if mlflow.get("ui_url"):
        if "mlflow" in up:
            console.print(f"MLflow UI:     {mlflow['ui_url']}", highlight=False)
            console.print(f"Tracking URI:  {mlflow['tracking_uri']}", highlight=False)
            if login := mlflow.get("login"):
                console.print(
                    f"MLflow login:  {login['username']}, password in {login['password_in']} "
                    "(`tunekit ui` shows it)",
                    highlight=False,
                )
        else:
            console.print(
                f"MLflow UI:     {mlflow['ui_url']} (stopped; `make ui` reopens it on this "
                "run's data)",
                highlight=False,
            )
    if "gcs-emulator" in up:
        console.print(
            f"Bucket:        {cluster['bucket_url']} on the GCS emulator "
            f"(STORAGE_EMULATOR_HOST={cluster['endpoints']['gcs']})",
            highlight=False,
        )
    if up:
        console.print(f"Still running: {', '.join(up)} (`make down` stops them)", highlight=False)


@app.command()
def sweep(
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            metavar="SETTING=V1,V2",
            help="Values of a training setting to try (repeatable); default: lora_r and "
            "learning_rate at half the run's and at the run's (locally 8,16 and 1e-3,2e-3).",
        ),
    ] = None,
    trials: Annotated[int, typer.Option(help="Trials to run; 0: the whole grid.")] = 0,
    sampler: Annotated[str, typer.Option(help="grid, random or tpe (Optuna; Katib on GKE).")] = (
        "grid"
    ),
    seed: Annotated[int, typer.Option(help="The sampler's seed.")] = 0,
    parallel: Annotated[int, typer.Option(help="Trials at once (GKE; locally one).")] = 1,
    param: ParamOpt = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="A run with stages 01-02; default: the latest.")
    ] = None,
) -> None:
    """Fine-tune once per trial of a search, each trial a child run of one MLflow parent run;
    stage 04 then registers the best. Finished trials of the same sweep are reused."""
    import tunekit
    from tunekit.objective import score
    from tunekit.sweep import Sweep, parse_grid

    try:
        the_run = open_run(run_dir or "", **parse_params(param, None))
        space = parse_grid(grid) if grid else {}
        plan = Sweep(the_run.settings, space, sampler, trials, seed, parallel)  # type: ignore[arg-type]
        result = tunekit.sweep(the_run, plan)
    except RunBusyError as e:
        raise _fail(str(e), code=3) from None
    except (SettingsError, FileNotFoundError, RuntimeError) as e:
        raise _fail(str(e)) from None
    names = list(plan.space)
    table = Table(
        "run", "status", *names, "score", "held-out exec. acc.", "validation exec. acc.",
        "eval loss", title=f"sweep {plan.id}",
    )  # fmt: skip
    for t in result.get("trials", []):
        table.add_row(t["run_id"], t["status"], *(str(t[n]) for n in names),
                      _num(score(t)), _num(t["tuned_execution_accuracy"]),
                      _num(t["validation_tuned_execution_accuracy"]),
                      _num(t["eval_loss"]))  # fmt: skip
    console.print(table)
    console.print(
        f"Best: {result.get('best_run_id')} (parent run {result['parent_run_id']}); stage 04 "
        "registers the experiment's best run",
        highlight=False,
    )
    if not result.get("finished", 1):
        raise typer.Exit(1)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


@app.command()
def reproduce(
    ref: Annotated[str, typer.Argument(help="An MLflow run id, or models:/<name>@<alias>.")],
    run_dir: Annotated[
        Path | None, typer.Option(help="A run with stages 01-02; default: the latest.")
    ] = None,
    allow_other_commit: Annotated[
        bool, typer.Option(help="Go on when the run was made by another commit of the kit.")
    ] = False,
    tolerance: Annotated[
        float, typer.Option(help="Largest difference of the tuned model's metrics allowed.")
    ] = 0.01,
) -> None:
    """Fine-tune a recorded run again from its MLflow record (settings, commit, data digests)
    into a new run tagged tunekit.reproduces; exit 1 if its metrics differ beyond --tolerance."""
    from tunekit.stages import reproduce as run_reproduction

    try:
        the_run = open_run(run_dir or "")
        result = run_reproduction(the_run, ref, allow_other_commit, tolerance)
    except RunBusyError as e:
        raise _fail(str(e), code=3) from None
    except (SettingsError, FileNotFoundError, RuntimeError) as e:
        raise _fail(str(e)) from None
    table = Table("metric", "original", "reproduction", "delta", title=f"reproduce {ref}")
    for row in result["metrics"]:
        color = "green" if row["ok"] else "red"
        table.add_row(row["metric"], _num(row["original"]), _num(row["reproduction"]),
                      f"[{color}]{_num(row['delta'])}[/]")  # fmt: skip
    console.print(table)
    console.print(
        f"Reproduction: run {result['reproduction_run_id']} ({result['tag']})", highlight=False
    )
    if not result["matches"]:
        console.print(f"[red]The metrics differ by more than {tolerance}.[/]")
        raise typer.Exit(1)


@app.command()
def rollout(
    run_dir: Annotated[
        Path | None,
        typer.Option(help="A run whose 05 serves a challenger; default: the latest."),
    ] = None,
    deadline_s: Annotated[
        float, typer.Option(help="No decision by then: rolled back (too little traffic).")
    ] = 600,
    min_requests: Annotated[
        int, typer.Option(help="The challenger's requests the rule needs before promoting.")
    ] = 200,
) -> None:
    """Promote the challenger or roll it back on live numbers: its error rate, p95 latency and
    validation accuracy beside the champion's, through the running server (stage 05)."""
    from mlflow.exceptions import MlflowException

    from tunekit.stages import rollout as run_rollout

    try:
        result = run_rollout(open_run(run_dir or ""), deadline_s, min_requests)
    except RunBusyError as e:
        raise _fail(str(e), code=3) from None
    except (SettingsError, OSError, RuntimeError, ValueError, MlflowException) as e:
        said = f"{type(e).__name__}: {e}" if isinstance(e, MlflowException) else str(e)
        raise _fail(said) from None

    table = Table(
        "live number", "value", title=f"rollout of version {result['challenger_version']}"
    )
    for key, value in result["numbers"].items():
        table.add_row(key, "-" if value is None else _num(value))
    console.print(table)
    color = "green" if result["verdict"] == "promoted" else "yellow"
    console.print(f"[{color}]{result['verdict']}[/]: " + ("; ".join(result["reasons"]) or
                  "every bar cleared"), highlight=False)  # fmt: skip
    console.print(f"aliases now: {result['aliases']}", highlight=False)


@app.command()
def down(run_dir: RunDirOpt = None) -> None:
    """Stop the services that runs left running (every run, or only --run-dir)."""
    dirs = [run_dir] if run_dir else list_runs()
    stopped_any = False
    for d in dirs:
        try:
            the_run = recorded_run(d)
        except FileNotFoundError as e:
            raise _fail(str(e)) from None
        if stopped := stop_all(the_run):
            console.print(f"{the_run.id}: stopped {', '.join(stopped)}", highlight=False)
            stopped_any = True
    if not stopped_any:
        console.print("Nothing was running.")


@app.command()
def ui(run_dir: RunDirOpt = None) -> None:
    """Reopen the MLflow UI on a run's data (the latest by default) until Ctrl-C."""
    from tunekit.backends import backend_for
    from tunekit.credentials import ADMIN

    try:
        the_run = open_run(run_dir or "")
        if not the_run.state.section("mlflow"):
            raise FileNotFoundError(f"run {the_run.id} has no MLflow yet: run stage 02-mlflow")
        backend = backend_for(the_run)
        info = backend.open_ui(the_run)
        login = backend.read_secret(the_run, ADMIN)
    except (SettingsError, FileNotFoundError, RuntimeError) as e:
        raise _fail(str(e)) from None
    console.print(f"MLflow UI: {info['ui_url']}  (run {the_run.id})", highlight=False)
    # the one place the kit shows a password: to the person at the terminal who asked for the UI
    console.print(
        f"Log in as {login['username']} with password {login['password']}", highlight=False
    )
    if not info["started"]:
        console.print("It was already running; `make down` stops it.")
        return
    try:
        console.print("Press Ctrl-C to stop.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop_all(the_run)
        console.print("Stopped.")


@app.command()
def settings(profile: ProfileOpt = None, param: ParamOpt = None) -> None:
    """Show the resolved settings (defaults < profile file < env < -p) and what each means."""
    try:
        resolved = load_settings(**parse_params(param, profile))
    except SettingsError as e:
        raise _fail(str(e)) from None
    table = Table("group", "setting", "value", "meaning", title=f"profile {resolved.profile}")
    for group, cls in GROUPS.items():
        for name in cls.names():
            field = Settings.model_fields[name]
            table.add_row(group, name, repr(getattr(resolved, name)), field.description or "")
    console.print(table)


@app.command()
def status(run_dir: RunDirOpt = None) -> None:
    """Show a run's stages and services (the latest run by default)."""
    from tunekit.run import latest_run

    try:
        the_run = recorded_run(run_dir or latest_run())
    except FileNotFoundError as e:
        raise _fail(str(e)) from None
    table = Table("stage", "status", "seconds", title=f"run {the_run.id}")
    for stage, info in the_run.state.section("stages").items():
        table.add_row(stage, info.get("status", ""), str(info.get("seconds", "")))
    console.print(table)
    _print_where(the_run)
