"""An MLflow outage during a fine-tune: nothing is lost, or the stage stops saying how to resume.

MLflow's facts these tests rest on (MLflow 3.17, urllib3 2): the trainer's metrics go through
MLflow's async queue (mlflow/utils/async_logging/async_logging_queue.py), which does not retry:
a batch whose request failed is dropped, logging "Failed to log run data". The request itself is
retried by urllib3 (mlflow/utils/request_utils.py): MLFLOW_HTTP_REQUEST_MAX_RETRIES times
(default 7), sleeping MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR * 2**(n-1) s before retry n >= 2
(default factor 2, at most 120 s; mlflow/environment_variables.py, urllib3/util/retry.py), about
4 minutes in all. The end-to-end tests below make that budget about 1 s (SHORT_HTTP) so that an
outage of seconds outlasts it.

Fast tests: the metric buffer and its replay against a real MLflow (SQLite in tmp_path), and the
wait for an MLflow that does not answer against real sockets. End to end (one training each):
MLflow killed mid-training and started again (nothing lost); MLflow down past the deadline (the
stage fails saying what to run; the re-run, with MLflow and the emulator still down, starts them
again and resumes into the same MLflow run).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import tunekit
from tunekit.credentials import child_environment
from tunekit.local_services import free_port
from tunekit.mlflow_outage import (
    DroppedBatches,
    MetricBuffer,
    MlflowUnavailable,
    replay_metrics,
    through_outage,
)
from tunekit.mlflow_record import TABLE_FILES, FinetuneRun
from tunekit.run import recorded_run
from tunekit.settings import SettingsError, load_settings
from tunekit.stages import use_login
from tunekit.train_parts import last_complete_checkpoint

from .conftest import REPO, tunekit_cli

# One retry, no backoff: a request to a stopped server fails within about a second
SHORT_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
MAX_STEPS, LOGGING_STEPS, EVAL_SIZE = 60, 2, 20
SETTINGS = [
    *(
        "-p",
        f"max_steps={MAX_STEPS}",
        "-p",
        "save_steps=20",
        "-p",
        f"logging_steps={LOGGING_STEPS}",
    ),
    *("-p", "synthetic_rows=600", "-p", f"eval_size={EVAL_SIZE}", "-p", "eval_set_rows=12"),
    *("-p", "experiment_name=outage"),
]
EVERY_STEP = list(range(LOGGING_STEPS, MAX_STEPS + 1, LOGGING_STEPS))


# --- fast: the buffer, its replay, the wait


@pytest.fixture(scope="module")
def _store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real MLflow tracking store for the module: SQLite, artifacts in a folder."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("outage-unit", (folder / "artifacts").as_uri())
    return uri


@pytest.fixture
def local_mlflow(_store: str, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _store)
    mlflow.set_tracking_uri(_store)
    return MlflowClient(_store)


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float, int]]:
    return sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key))


def test_replay_logs_the_buffered_points_mlflow_lacks_once(
    tmp_path: Path, local_mlflow: MlflowClient
) -> None:
    experiment = local_mlflow.get_experiment_by_name("outage-unit")
    run_id = local_mlflow.create_run(experiment.experiment_id).info.run_id
    buffer = MetricBuffer(tmp_path / "metrics.jsonl")
    for step in (5, 10, 15, 20):
        buffer.add({"loss": 1.0 / step, "learning_rate": 1e-4}, step=step)
    # what the async queue delivered before the outage: steps 5 and 10 of `loss`
    for step in (5, 10):
        local_mlflow.log_metric(run_id, "loss", 1.0 / step, step=step)
    assert replay_metrics(buffer, run_id) == 2 + 4
    history = _history(local_mlflow, run_id, "loss")
    assert [s for s, _, _ in history] == [5, 10, 15, 20]
    buffered = buffer.points()
    assert history[2] == (15, 1.0 / 15, buffered[("loss", 15)].timestamp)  # the buffered point
    assert replay_metrics(buffer, run_id) == 0  # idempotent: a second replay adds nothing
    assert len(local_mlflow.get_metric_history(run_id, "loss")) == 4


def test_buffer_keeps_the_newest_point_of_a_step_and_skips_a_torn_line(tmp_path: Path) -> None:
    buffer = MetricBuffer(tmp_path / "metrics.jsonl")
    buffer.add({"loss": 2.0, "eval/loss (mean)": 3.0}, step=10)
    buffer.add({"loss": 1.5}, step=10)  # step 10 trained again after a resume
    with buffer.path.open("a") as f:
        f.write('{"key": "loss", "value": 1.0, "st')  # killed while writing
    points = buffer.points()
    assert points[("loss", 10)].value == 1.5
    assert set(points) == {("loss", 10), ("eval/loss _mean_", 10)}  # MLflowCallback's name
    buffer.clear()
    assert buffer.points() == {}


def test_buffer_holds_what_mlflow_callback_logs(tmp_path: Path, local_mlflow: MlflowClient):
    import torch
    from transformers import TrainerState, TrainingArguments
    from transformers.integrations import MLflowCallback

    from tunekit.train_parts import MetricBufferCallback

    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[])
    state = TrainerState(global_step=7)
    logs = {"loss": 1.25, "grad_norm": torch.tensor(0.5), "learning_rate": 2e-4,
            "eval/acc(top1)": 0.75, "num_tokens": 1024, "note": "text is no metric"}  # fmt: skip
    buffer = MetricBuffer(tmp_path / "metrics.jsonl")
    mlflow.set_experiment("outage-unit")
    with mlflow.start_run() as run:
        MLflowCallback().on_log(args, state, None, logs=dict(logs))
        MetricBufferCallback(buffer).on_log(args, state, None, logs=dict(logs))
        mlflow.flush_async_logging()
    logged = {
        (key, m.step): m.value
        for key in local_mlflow.get_run(run.info.run_id).data.metrics
        for m in local_mlflow.get_metric_history(run.info.run_id, key)
    }
    assert {k: p.value for k, p in buffer.points().items()} == logged
    assert ("eval/acc_top1_", 7) in logged


def test_the_evaluation_is_logged_once(tmp_path: Path, local_mlflow: MlflowClient) -> None:
    experiment = local_mlflow.get_experiment_by_name("outage-unit")
    run_id = local_mlflow.create_run(experiment.experiment_id).info.run_id
    buffer = MetricBuffer(tmp_path / "metrics.jsonl")
    tracked = FinetuneRun(run_id, experiment.experiment_id, buffer, 30, False, DroppedBatches())
    evaluation = {
        "metrics": {"tuned_exact_match": 0.5, "base_exact_match": 0.0},
        "tables": {
            "held_out": {"question": ["a?", "b?", "c?"], "tuned_correct": [True, False, True]},
            "test": {"question": ["d?"], "tuned_correct": [False]},
        },
        "timestamp": 1_700_000_000_000,
    }
    for _ in range(2):  # a re-run after an outage logs it again
        tracked.log_evaluation(evaluation)
    assert _history(local_mlflow, run_id, "tuned_exact_match") == [(0, 0.5, 1_700_000_000_000)]
    for name, rows in (("held_out", 3), ("test", 1)):
        loaded = local_mlflow.load_table(
            experiment.experiment_id, TABLE_FILES[name], run_ids=[run_id]
        )
        assert len(loaded) == rows  # MLflow's log_table would have appended a second copy


def test_a_batch_the_async_queue_drops_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    mlflow.set_tracking_uri(uri)
    dropped = DroppedBatches()
    logging.getLogger(DroppedBatches.LOGGER).addHandler(dropped)
    try:
        MlflowClient(uri).log_metric("0" * 32, "loss", 1.0, step=2, synchronous=False)
        mlflow.flush_async_logging()
    finally:
        logging.getLogger(DroppedBatches.LOGGER).removeHandler(dropped)
    assert dropped.count == 1


def test_an_mlflow_that_does_not_answer_is_waited_for_then_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    mlflow.set_tracking_uri(uri)
    started = time.monotonic()
    with pytest.raises(MlflowUnavailable) as failed:
        through_outage("listing", lambda: MlflowClient().search_experiments(), outage_s=3)
    assert time.monotonic() - started == pytest.approx(3, abs=2.5)
    assert str(failed.value) == (
        f"MLflow at {uri} did not answer for 3 s (setting mlflow_outage_s) while listing"
    )


def test_the_call_goes_through_once_mlflow_answers_again(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    mlflow.set_tracking_uri(uri)

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args: Any) -> None:
            pass

    servers: list[ThreadingHTTPServer] = []

    def start_later() -> None:  # the server comes back after 2 s
        time.sleep(2)
        servers.append(ThreadingHTTPServer(("127.0.0.1", port), Health))
        servers[0].serve_forever()

    threading.Thread(target=start_later, daemon=True).start()
    session = requests.Session()
    session.trust_env = False
    try:
        answer = through_outage(
            "asking", lambda: session.get(f"{uri}/health", timeout=2).text, outage_s=30
        )
    finally:
        if servers:
            servers[0].shutdown()
    assert answer == "OK"
    assert (
        f"tunekit: MLflow at {uri} did not answer (asking); waiting up to "
        in capsys.readouterr().out
    )


def test_an_error_that_is_no_outage_is_raised_at_once(local_mlflow: MlflowClient) -> None:
    calls = []

    def missing_run() -> Any:
        calls.append(1)
        return MlflowClient().get_run("0" * 32)

    with pytest.raises(MlflowException, match="not found"):
        through_outage("reading", missing_run, outage_s=30)
    assert len(calls) == 1


def test_the_outage_deadline_is_a_checked_setting() -> None:
    assert load_settings().mlflow_outage_s == 300
    with pytest.raises(SettingsError, match=r"mlflow_outage_s: Input should be greater than or"):
        load_settings(mlflow_outage_s=-1)


# --- end to end: a real series, its MLflow server killed mid-training


def _series(run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tunekit", "run", "--stages", "01-03", "--run-dir", str(run_dir),
         *SETTINGS, *extra],
        cwd=REPO, env=child_environment(SHORT_HTTP), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _trained_step(run_dir: Path) -> int:
    """The step of the fine-tune's newest complete checkpoint (0 before the first)."""
    jobs = list((run_dir / "finetune").glob("ft-*/checkpoints"))
    found = last_complete_checkpoint(jobs[0]) if jobs else None
    return int(found.rsplit("-", 1)[1]) if found else 0


def _wait_for_step(run_dir: Path, step: int, deadline_s: float = 400) -> int:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if (done := _trained_step(run_dir)) >= step:
            return done
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint-{step} within {deadline_s} s")


def _kill_service(run_dir: Path, name: str) -> None:
    """SIGKILL service `name` and its workers, as a crash would: its record stays, so it is
    started again on the same port."""
    record = json.loads((run_dir / "state.json").read_text())["services"][name]
    os.killpg(record["pid"], signal.SIGKILL)
    end = time.monotonic() + 30
    while _listening(record["url"]) and time.monotonic() < end:
        time.sleep(0.1)


def _listening(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
    except requests.RequestException:
        return False
    return True


def _client(run_dir: Path) -> MlflowClient:
    run = recorded_run(run_dir)
    use_login(run)
    uri = run.state.section("mlflow")["tracking_uri"]
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def _assert_one_complete_run(run_dir: Path) -> dict[str, Any]:
    """One FINISHED run with every `loss` step, one adapter model and the evaluation once."""
    client = _client(run_dir)
    finetune = recorded_run(run_dir).state.section("finetune")
    experiment = client.get_experiment_by_name("outage")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [finetune["mlflow_run_id"]]
    run = runs[0]
    steps = sorted({m.step for m in client.get_metric_history(run.info.run_id, "loss")})
    assert steps == EVERY_STEP
    assert run.info.status == "FINISHED"
    models = client.search_logged_models(
        [experiment.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    assert [(m.name, str(m.status)) for m in models] == [("model", "READY")]
    assert finetune["model_uri"] == f"models:/{models[0].model_id}"
    table = client.load_table(
        experiment.experiment_id, TABLE_FILES["held_out"], run_ids=[run.info.run_id]
    )
    assert len(table) == EVAL_SIZE
    for metric in ("tuned_exact_match", "tuned_execution_accuracy", "base_execution_accuracy"):
        assert len(client.get_metric_history(run.info.run_id, metric)) == 1, metric
    return finetune


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """01-03; MLflow killed after a checkpoint; the trainer trains (and logs) on to the next
    one and is paused there while stage 02's own function starts MLflow again (seconds: far
    past the HTTP retries); then it goes on with MLflow back. The pause only keeps a tiny,
    fast training from finishing before MLflow is back."""
    run_dir = tmp_path_factory.mktemp("outage") / "run"
    series = _series(run_dir)
    trainer = 0
    try:
        killed_at = _wait_for_step(run_dir, 10)
        _kill_service(run_dir, "mlflow")
        trainer = recorded_run(run_dir).state.section("finetune")["pid"]
        paused_at = _wait_for_step(run_dir, killed_at + 10, deadline_s=120)
        os.kill(trainer, signal.SIGSTOP)
        down_s = time.monotonic()
        tunekit.start_mlflow(recorded_run(run_dir))  # = `tunekit run --stages 02`
        down_s = time.monotonic() - down_s
        os.kill(trainer, signal.SIGCONT)
        output, _ = series.communicate(timeout=400)
        yield {"run_dir": run_dir, "returncode": series.returncode, "output": output,
               "killed_at": killed_at, "paused_at": paused_at, "down_s": down_s}  # fmt: skip
    finally:
        with suppress(ProcessLookupError):
            if trainer:
                os.kill(trainer, signal.SIGCONT)
        series.kill()
        tunekit_cli("down", "--run-dir", str(run_dir))


@pytest.mark.e2e
def test_an_outage_mid_training_loses_no_metric_point(restarted: dict[str, Any]) -> None:
    assert restarted["returncode"] == 0, restarted["output"]
    # the trainer logged steps while MLflow was away, and more once it was back
    assert restarted["killed_at"] < restarted["paused_at"] < MAX_STEPS
    assert restarted["down_s"] > 3  # MLflow's start alone outlasts SHORT_HTTP's retries
    finetune = _assert_one_complete_run(restarted["run_dir"])
    assert finetune["status"] == "finished" and finetune["steps"] == MAX_STEPS
    log = Path(finetune["log"]).read_text()
    assert "Failed to log run data" in log  # MLflow's async queue dropped batches ...
    assert "metric points again that MLflow had missed" in log  # ... that the buffer replayed


@pytest.fixture(scope="module")
def gave_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """01-03 with a deadline of 8 s; MLflow killed after checkpoint 10 and left down. Then the
    emulator dies too, and stage 03 runs again."""
    run_dir = tmp_path_factory.mktemp("outage") / "run"
    series = _series(run_dir, "-p", "mlflow_outage_s=8")
    try:
        _wait_for_step(run_dir, 10)
        _kill_service(run_dir, "mlflow")
        first, _ = series.communicate(timeout=400)
        first_state = recorded_run(run_dir).state.section("finetune")
        first_log = Path(first_state["log"]).read_text()
        _kill_service(run_dir, "gcs-emulator")
        second = tunekit_cli(
            "run", "--stages", "03", "--run-dir", str(run_dir), env=SHORT_HTTP, timeout=400
        )
        yield {"run_dir": run_dir, "first": (series.returncode, first),
               "first_state": first_state, "first_log": first_log, "second": second}  # fmt: skip
    finally:
        series.kill()
        tunekit_cli("down", "--run-dir", str(run_dir))


@pytest.mark.e2e
def test_mlflow_down_past_the_deadline_fails_the_stage_saying_what_to_run(
    gave_up: dict[str, Any],
) -> None:
    returncode, output = gave_up["first"]
    assert returncode != 0
    run_dir = gave_up["run_dir"]
    uri = recorded_run(run_dir).state.section("mlflow")["tracking_uri"]
    run_id = (Path(gave_up["first_state"]["job_dir"]) / "mlflow_run_id").read_text()
    said = (
        f"tunekit: MLflow at {uri} did not answer for 8 s (setting mlflow_outage_s) while "
        "logging the evaluation. "
        f"The training is saved at checkpoint-{MAX_STEPS}; start MLflow (`tunekit run --stages 02 "
        f"--run-dir {run_dir}`) and re-run stage 03 (`tunekit run --stages 03 --run-dir "
        f"{run_dir}`): it resumes into the same MLflow run {run_id}"
    )
    assert said in output, output  # the stage's error shows the trainer's last lines
    assert gave_up["first_log"].rstrip().endswith(said)  # the trainer's last word
    assert gave_up["first_state"]["status"] == "failed"


@pytest.mark.e2e
def test_the_rerun_starts_mlflow_and_the_emulator_and_finishes_the_same_run(
    gave_up: dict[str, Any],
) -> None:
    second = gave_up["second"]
    assert second.returncode == 0, second.stdout + second.stderr
    executed = (gave_up["run_dir"] / "notebooks" / "03-finetune.ipynb").read_text()
    assert "tunekit: gcs-emulator, mlflow had stopped: started again" in executed
    finetune = _assert_one_complete_run(gave_up["run_dir"])
    assert finetune["resumed_from_step"] == MAX_STEPS  # trained once: only the records were left
    attempts = Path(finetune["log"]).read_text().split("\n--- ")[1:]
    assert len(attempts) == 2
    assert "evaluating the base and the tuned model" not in attempts[1]  # evaluated once
