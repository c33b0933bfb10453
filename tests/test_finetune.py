"""Stage 03 end to end: a tiny LoRA fine-tune through the runner, killed mid-way and resumed.

One module-scoped run (the expensive part) feeds every assertion: the training process is killed
after its second checkpoint, the stage fails with a pointer to re-run it, the re-run resumes in
the same MLflow run, and the finished run holds everything the issue asks of it.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import mlflow
import psutil
import pytest
from mlflow.tracking import MlflowClient
from sqlglot import exp

import tunekit
from tunekit import eval_sets
from tunekit.backends.local.finetune import job_dir
from tunekit.credentials import child_environment
from tunekit.evaluate import Schema, parse_query
from tunekit.mlflow_record import TABLE_FILES
from tunekit.prompts import build_prompt
from tunekit.run import recorded_run
from tunekit.stages import use_login
from tunekit.train import RESULT_FILE
from tunekit.train_parts import last_complete_checkpoint

from .conftest import REPO, assert_secrets_stay_in_their_file, tunekit_cli, wait_for_checkpoint

pytestmark = pytest.mark.e2e

MAX_STEPS, SAVE_STEPS, KILL_AFTER = 60, 10, 20
SECRET = "hf_test_secret_never_logged_42"  # HF_TOKEN of the training: must reach no record
SETTINGS = [
    *("-p", f"max_steps={MAX_STEPS}", "-p", f"save_steps={SAVE_STEPS}", "-p", "logging_steps=5"),
    *("-p", "synthetic_rows=800", "-p", "eval_size=24", "-p", "experiment_name=ft-test"),
    *("-p", "eval_set_rows=12"),
]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Run 01-03, kill the trainer after checkpoint KILL_AFTER, then re-run 03 to finish."""
    run_dir = tmp_path_factory.mktemp("finetune") / "run"
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tunekit",
            "run",
            "--stages",
            "01-03",
            "--run-dir",
            str(run_dir),
            *SETTINGS,
        ],
        cwd=REPO,
        env=child_environment({"HF_TOKEN": SECRET}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        killed_at = _kill_trainer_after_checkpoint(run_dir, KILL_AFTER, deadline_s=400)
        first_out, _ = first.communicate(timeout=120)
        second = tunekit_cli(
            "run", "--stages", "03", "--run-dir", str(run_dir), env={"HF_TOKEN": SECRET},
            timeout=400,
        )  # fmt: skip
        run = recorded_run(run_dir)
        yield {
            "run_dir": run_dir,
            "killed_at": killed_at,
            "first": (first.returncode, first_out),
            "second": second,
            "state": run.state.section("finetune"),
            "tracking_uri": run.state.section("mlflow")["tracking_uri"],
        }
    finally:
        first.kill()
        tunekit_cli("down", "--run-dir", str(run_dir))


def _kill_trainer_after_checkpoint(run_dir: Path, step: int, deadline_s: float) -> int:
    """SIGKILL the training process once checkpoint `step` is complete; the step it was at."""
    section, done = wait_for_checkpoint(run_dir, step, deadline_s)
    os.kill(section["pid"], signal.SIGKILL)
    return done


def test_killed_training_fails_the_stage_with_a_way_forward(resumed: dict) -> None:
    returncode, output = resumed["first"]
    assert returncode != 0
    assert "re-run the stage to resume from its last checkpoint" in output
    assert resumed["killed_at"] < MAX_STEPS


def test_rerun_resumes_from_the_checkpoint_and_finishes(resumed: dict) -> None:
    second = resumed["second"]
    assert second.returncode == 0, second.stdout + second.stderr
    state = resumed["state"]
    assert state["status"] == "finished" and state["steps"] == MAX_STEPS
    # fewer steps the second time: it started where the last complete checkpoint left off
    assert state["resumed_from_step"] >= resumed["killed_at"] > 0
    attempts = Path(state["log"]).read_text().split("\n--- ")[1:]
    assert len(attempts) == 2 and "--resume" in attempts[1].splitlines()[0]
    assert f"tunekit: resuming from {state['job_dir']}/checkpoints/checkpoint-" in attempts[1]
    steps = [int(line.split()[1].split("/")[0]) for line in attempts[1].splitlines()
             if line.startswith("step ")]  # fmt: skip
    assert steps and min(steps) > state["resumed_from_step"] and max(steps) == MAX_STEPS


@pytest.fixture
def client(resumed: dict) -> MlflowClient:
    use_login(recorded_run(resumed["run_dir"]))
    mlflow.set_tracking_uri(resumed["tracking_uri"])
    return MlflowClient(resumed["tracking_uri"])


def test_one_mlflow_run_with_a_continuous_metric_history(
    resumed: dict, client: MlflowClient
) -> None:
    experiment = client.get_experiment_by_name("ft-test")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [resumed["state"]["mlflow_run_id"]]
    steps = sorted({m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")})
    assert steps == list(range(5, MAX_STEPS + 1, 5))
    assert runs[0].info.status == "FINISHED"


def test_run_holds_params_tags_metrics_and_inputs(resumed: dict, client: MlflowClient) -> None:
    run = client.get_run(resumed["state"]["mlflow_run_id"])
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["tunekit.max_steps"] == str(MAX_STEPS)
    assert params["tunekit.model_id"] == "tiny-gemma2"
    for name in ("learning_rate", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
                 "per_device_train_batch_size", "eval_size", "seed", "dataset"):  # fmt: skip
        assert f"tunekit.{name}" in params, name
    recorded = json.dumps([params, tags])
    assert SECRET not in recorded
    assert params.get("hub_token", "<HUB_TOKEN>") == "<HUB_TOKEN>"  # transformers redacts it
    assert tags["tunekit.profile"] == "local" and tags["tunekit.dataset"] == "synthetic"
    assert tags["tunekit.version"] and len(tags["tunekit.git_commit"]) >= 7
    for name in ("loss", "learning_rate", "grad_norm", "tokens_per_second"):
        history = client.get_metric_history(run.info.run_id, name)
        assert len(history) >= 3, name
        assert all(m.value == m.value for m in history), name  # no NaN
    assert any(k.startswith("system/cpu_utilization") for k in metrics)
    for prefix in ("", "validation_", "test_"):  # held-out rows, validation and test sets
        for model in ("base", "tuned"):
            for metric in ("exact_match", "execution_accuracy"):
                assert 0.0 <= metrics[f"{prefix}{model}_{metric}"] <= 1.0
    # the score ranks runs: the mean of the tuned model's two execution accuracies
    assert metrics["score"] == pytest.approx(
        (metrics["tuned_execution_accuracy"] + metrics["validation_tuned_execution_accuracy"]) / 2
    )
    inputs = {
        {t.key: t.value for t in d.tags}["mlflow.data.context"]: d.dataset
        for d in run.inputs.dataset_inputs
    }
    assert set(inputs) == {"training", "evaluation"}
    assert all(d.digest and d.source for d in inputs.values())
    assert json.loads(inputs["evaluation"].profile)["num_rows"] == 24


def test_the_secret_reached_no_file_of_the_run(resumed: dict) -> None:
    assert_secrets_stay_in_their_file(resumed["run_dir"], [SECRET])


def test_evaluation_table_has_a_row_per_held_out_example(
    resumed: dict, client: MlflowClient
) -> None:
    state = resumed["state"]
    table = client.load_table(
        state["experiment_id"], "evaluation/predictions.json", run_ids=[state["mlflow_run_id"]]
    )
    assert len(table) == 24
    for column in ("prompt", "gold", "base_prediction", "tuned_prediction", "tuned_correct"):
        assert column in table.columns
    accuracy = table["tuned_correct"].mean()
    assert accuracy == pytest.approx(resumed["state"]["tuned_execution_accuracy"])
    for name, rows in (
        ("validation", eval_sets.validation_rows(12)),
        ("test", eval_sets.test_rows(12)),
    ):
        logged = client.load_table(
            state["experiment_id"], TABLE_FILES[name], run_ids=[state["mlflow_run_id"]]
        )
        assert list(logged["question"]) == [r["question"] for r in rows]
        assert set(logged["style"]) == {r["style"] for r in rows}
        assert logged["tuned_correct"].mean() == pytest.approx(
            resumed["state"][f"{name}_tuned_execution_accuracy"]
        )
        # constrained (the default): every answer is SQL over its own context's names, even
        # from a model trained for 20 steps; the free answers of the same model need not be
        for row, sql in zip(rows, logged["tuned_prediction"], strict=True):
            schema = Schema.from_context(row["context"])
            named = {c.name.lower() for c in parse_query(sql, schema).find_all(exp.Column)}
            tables = {t.name.lower() for t in parse_query(sql, schema).find_all(exp.Table)}
            assert named <= schema.names and tables <= set(schema.tables), (sql, row["context"])


def test_logged_adapter_loads_with_pyfunc_and_generates(
    resumed: dict, client: MlflowClient
) -> None:
    model_uri = resumed["state"]["model_uri"]
    local = mlflow.artifacts.download_artifacts(model_uri)
    assert "adapter_config.json" in {p.name for p in Path(local).rglob("*")}
    assert not list(Path(local).rglob("model.safetensors"))  # the adapter only, not base weights
    requirements = (Path(local) / "requirements.txt").read_text()
    assert "peft==" in requirements and "transformers==" in requirements
    model = mlflow.pyfunc.load_model(model_uri)
    prompt = build_prompt(
        "Which venue has a week of 3?", "CREATE TABLE game (venue VARCHAR, week INTEGER)"
    )
    [answer] = model.predict([prompt])
    assert isinstance(answer, str) and answer.strip()
    assert not answer.startswith(prompt)  # return_full_text is off: the completion only


# --- a trainer whose kernel died; a result.json cut short

ORPHAN_SETTINGS = {
    "max_steps": 20, "save_steps": 10, "logging_steps": 5, "synthetic_rows": 600,
    "eval_size": 20, "experiment_name": "orphan-test", "eval_set_rows": 12,
}  # fmt: skip
# A notebook kernel's stand-in: it runs stage 03 until it is killed
KERNEL = "import sys, tunekit; tunekit.finetune(tunekit.open_run(sys.argv[1]))"


class TrainerWatch:
    """Samples the trainers of a job dir (psutil) in a thread: each pid seen, in order, and the
    most that ran at once."""

    def __init__(self, job: Path):
        self.job, self.pids, self.most = str(job), [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def trainers(self) -> list[int]:
        return [
            p.pid
            for p in psutil.process_iter(["cmdline", "status"])
            if "tunekit.train" in (p.info["cmdline"] or [])
            and self.job in (p.info["cmdline"] or [])
            and p.info["status"] != psutil.STATUS_ZOMBIE
        ]

    def _watch(self) -> None:
        while not self._stop.is_set():
            now = self.trainers()
            self.most = max(self.most, len(now))
            self.pids += [pid for pid in now if pid not in self.pids]
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture(scope="module")
def orphaned(platform) -> Iterator[dict[str, Any]]:
    """Stage 03 in a kernel stand-in, SIGKILLed after checkpoint 10 while its trainer runs on;
    then stage 03 again, here."""
    run = tunekit.open_run(platform.dir, **ORPHAN_SETTINGS)
    job = job_dir(run)
    watch = TrainerWatch(job)
    kernel = subprocess.Popen(
        [sys.executable, "-c", KERNEL, str(run.dir)],
        env=child_environment({}),
        start_new_session=True,  # a kernel has its own session, as Jupyter starts it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        end = time.monotonic() + 400
        while not (done := last_complete_checkpoint(job / "checkpoints")):
            assert kernel.poll() is None and time.monotonic() < end, "no checkpoint"
            time.sleep(0.1)
        [orphan] = watch.trainers()
        kernel.kill()
        kernel.wait()
        orphan_outlived_its_kernel = psutil.pid_exists(orphan)
        out = io.StringIO()
        with redirect_stdout(out):
            result = tunekit.finetune(tunekit.open_run(run.dir))
        yield {
            "run": run, "job": job, "killed_at": done, "orphan": orphan,
            "orphan_outlived_its_kernel": orphan_outlived_its_kernel, "result": result,
            "output": out.getvalue(), "watch": watch,
        }  # fmt: skip
    finally:
        watch.stop()
        kernel.kill()


def test_an_orphaned_trainer_is_stopped_never_duplicated(orphaned: dict) -> None:
    watch = orphaned["watch"]
    assert orphaned["orphan_outlived_its_kernel"]
    assert watch.most == 1, f"{watch.most} trainers ran at once in {orphaned['job']}"
    assert watch.pids[0] == orphaned["orphan"] and len(watch.pids) == 2
    assert not psutil.pid_exists(orphaned["orphan"])
    assert f"Stopped trainer pid {orphaned['orphan']}" in orphaned["output"]
    result = orphaned["result"]
    assert result["status"] == "finished" and result["steps"] == 20 and result["pid"] is None
    assert result["resumed_from_step"] >= 10


def test_a_truncated_result_is_not_finished_the_job_resumes(orphaned: dict) -> None:
    """A result.json cut short (a crash mid-write): the stage resumes the job, it does not crash."""
    result_file = orphaned["job"] / RESULT_FILE
    whole = result_file.read_text()
    result_file.write_text(whole[: len(whole) // 2])
    again = tunekit.finetune(tunekit.open_run(orphaned["run"].dir))
    assert again["status"] == "finished" and again["reused"] is False
    assert again["resumed_from_step"] == 20  # from the last checkpoint: the training was done
    # and nothing is trained past max_steps (the Trainer, resumed at its last step, takes one
    # more: transformers/trainer.py `_run_epoch` checks max_steps only after a step)
    assert again["steps"] == 20
    assert again["mlflow_run_id"] == orphaned["result"]["mlflow_run_id"]
    assert json.loads(result_file.read_text())["mlflow_run_id"] == again["mlflow_run_id"]
