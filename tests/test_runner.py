"""The series runner: stage selection, the notebooks end to end, failures, bad settings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import mlflow
import nbformat
import psutil
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

import tunekit
from tunekit.local_services import healthy, running_services
from tunekit.run import recorded_run
from tunekit.series import parse_stages
from tunekit.settings import SettingsError
from tunekit.stages import STAGES, use_login
from tunekit.state import RunState

from .conftest import REPO, TINY_FINETUNE, tunekit_cli


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("all", list(STAGES)),
        ("01-03", ["01-cluster", "02-mlflow", "03-finetune"]),
        ("1-2", ["01-cluster", "02-mlflow"]),
        ("07,01", ["01-cluster", "07-cleanup"]),
        ("02-mlflow,7", ["02-mlflow", "07-cleanup"]),
        ("01,01-02", ["01-cluster", "02-mlflow"]),
    ],
)
def test_parse_stages(spec, expected):
    assert parse_stages(spec) == expected


@pytest.mark.parametrize("spec", ["", "08", "03-01", "cluster", "01-09", "0x"])
def test_parse_stages_rejects(spec):
    with pytest.raises(ValueError, match=r"stages: .* use e\.g\. '01-07'"):
        parse_stages(spec)


def _series_processes(folder: Path) -> set[int]:
    """Processes of the local platform (emulator, MLflow) of runs under `folder` (the services
    run in their run dir; other tests' runs, in parallel, are elsewhere)."""
    marks = ("gcp_storage_emulator", "mlflow server", "mlflow.server")
    found = set()
    for p in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if any(m in cmdline for m in marks) and str(folder) in f"{p.info['cwd']} {cmdline}":
            found.add(p.pid)
    return found


def test_bad_profile_fails_fast_and_starts_nothing(tmp_path):
    started = time.monotonic()
    result = tunekit_cli("run", "-p", "profile=nope", "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "profile: allowed: 'local' or 'gke' (got 'nope')" in result.stdout
    assert time.monotonic() - started < 15
    assert not (tmp_path / "r").exists()
    assert not _series_processes(tmp_path)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-p", "hf_token=hf_x"], "looks like a secret"),
        (["-p", "experiment_name"], "expected KEY=VALUE"),
        (["--profile", "local", "-p", "profile=gke"], "contradicts"),
        (["--stages", "09"], "stages: '09' is not a stage"),
        (["-p", "bucket=UPPER", "-p", "region=x"], "  bucket: "),
        # a data file that is not there, or whose rows cannot be used: refused at the start,
        # not in stage 03 with the emulator and MLflow left running
        (["-p", "dataset=/nonexistent.json"], "dataset file /nonexistent.json does not exist"),
        (["-p", "dataset={bad_rows}"], "row 1: field 'answer' is missing"),
        (["-p", "dataset={few_rows}", "-p", "eval_size=5"], "eval_size: must be smaller"),
    ],
)
def test_bad_input_is_refused_before_anything_starts(tmp_path, args, says):
    bad_rows, few_rows = tmp_path / "bad.jsonl", tmp_path / "few.jsonl"
    row = {"question": "q?", "context": "CREATE TABLE t (a INT)", "answer": "SELECT a FROM t"}
    bad_rows.write_text(json.dumps(row) + "\n" + json.dumps({"question": "q", "context": "c"}))
    few_rows.write_text("\n".join(json.dumps(row) for _ in range(3)))
    args = [a.format(bad_rows=bad_rows, few_rows=few_rows) for a in args]
    result = tunekit_cli("run", *args, "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2
    assert says in result.stdout
    assert not (tmp_path / "r").exists()
    assert not _series_processes(tmp_path)


def test_a_value_that_fails_is_never_recorded(tmp_path):
    """A bad value given to a run that exists: refused, and the run keeps its settings, so
    the next command on the run dir without the value works."""
    run_dir = tmp_path / "r"
    tunekit.start_run(run_dir, dataset="synthetic")
    recorded = RunState(run_dir).section("settings")
    with pytest.raises(SettingsError, match=r"dataset file /nonexistent\.json does not exist"):
        tunekit.open_run(run_dir, dataset="/nonexistent.json")
    assert RunState(run_dir).section("settings") == recorded
    assert tunekit.open_run(run_dir).settings.dataset == "synthetic"


def test_a_run_whose_data_file_is_gone_still_opens(tmp_path):
    """The rows are checked when a run starts with them (or changes them), not on every open:
    07-cleanup and `tunekit ui` work on a run whose data file was moved since."""
    rows = tmp_path / "rows.jsonl"
    row = {"question": "q?", "context": "CREATE TABLE t (a INT)", "answer": "SELECT a FROM t"}
    rows.write_text("\n".join(json.dumps(row) for _ in range(30)))
    tunekit.start_run(tmp_path / "r", dataset=str(rows), eval_size=5)
    rows.unlink()
    assert tunekit.open_run(tmp_path / "r").settings.dataset == str(rows)
    with pytest.raises(SettingsError, match="does not exist"):
        tunekit.open_run(tmp_path / "r", eval_size=6)  # a data setting changed: checked again


def test_failing_stage_reports_cell_error_and_notebook(tmp_path):
    """Stage 02 without stage 01: the notebook raises, the runner says where and why."""
    run_dir = tmp_path / "r"
    result = tunekit_cli("run", "--stages", "02,07", "--run-dir", str(run_dir))
    assert result.returncode == 1, result.stdout
    executed = run_dir / "notebooks" / "02-mlflow.ipynb"
    out = " ".join(result.stdout.split())  # undo line wrapping
    assert "✗ 02-mlflow failed at cell In [" in out
    assert "`tracking = tunekit.start_mlflow(run)`" in out
    assert "RuntimeError: no GCS emulator recorded for this run: run stage 01-cluster first" in out
    assert f"executed notebook: {executed}" in out
    assert "07-cleanup" not in out.split("tunekit run")[-1]  # stopped: 07 never ran
    # the executed notebook holds the traceback in the cell the runner named
    number = int(out.split("failed at cell In [")[1].split("]")[0])
    [cell] = [
        c for c in nbformat.read(executed, as_version=4).cells if c.get("execution_count") == number
    ]
    assert any(o.get("ename") == "RuntimeError" for o in cell.outputs)
    assert recorded_run(run_dir).state.section("stages")["02-mlflow"]["status"] == "failed"


def _all_files_text(root) -> str:
    return "\n".join(
        p.read_text(errors="replace")
        for p in root.rglob("*")
        if p.is_file() and p.suffix in {".json", ".ipynb", ".log", ".yaml"}
    )


@pytest.mark.e2e
def test_series_01_02_07_end_to_end(tmp_path):
    """The CI entry point runs 01, 02, 07 on the local profile; nothing is left running."""
    run_dir = tmp_path / "ci-run"
    secret = "hf_never_written_anywhere_123"
    result = subprocess.run(
        [
            str(REPO / "ci" / "run-series.sh"),
            "--stages",
            "01-07",
            "-p",
            "experiment_name=e2e",
            *TINY_FINETUNE,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "RUN_DIR": str(run_dir),
            "HF_TOKEN": secret,
            "TUNEKIT": shutil.which("tunekit") or str(REPO / ".venv" / "bin" / "tunekit"),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    for stage in ("01-cluster", "02-mlflow", "03-finetune", "07-cleanup"):
        assert f"✓ {stage}" in out
        assert (run_dir / "notebooks" / f"{stage}.ipynb").is_file()
    state = json.loads((run_dir / "state.json").read_text())
    assert state["settings"]["experiment_name"] == "e2e"
    assert state["mlflow"]["experiment_name"] == "e2e"
    assert f"MLflow UI: {state['mlflow']['ui_url']}" in out
    assert f"Run directory: {run_dir}" in out
    assert {s["status"] for s in state["stages"].values()} == {"ok"}
    assert state["services"] == {}
    assert not healthy(state["mlflow"]["tracking_uri"] + "/health")
    # the papermill parameters were injected into the single parameters cell
    executed = nbformat.read(run_dir / "notebooks" / "02-mlflow.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and str(run_dir) in injected[0].source
    assert 'settings = {"experiment_name": "e2e", ' in injected[0].source
    # the artifact check of stage 02 found its blob on disk under the run dir
    assert list((run_dir / "gcs").rglob("probe.txt"))
    # headless, the progress is plain lines, not widgets; the plots are images
    finetune = nbformat.read(run_dir / "notebooks" / "03-finetune.ipynb", as_version=4)
    outputs = [o for c in finetune.cells for o in c.get("outputs", [])]
    streamed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "step 20/20" in streamed
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
    # the secret in the environment reached no file of the run
    assert secret not in _all_files_text(run_dir)


def _printed(output: str, label: str) -> str:
    return next(line.split(label, 1)[1].split()[0] for line in output.splitlines() if label in line)


@pytest.mark.e2e
def test_platform_up_logs_to_bucket_and_rerun_reuses_the_server(tmp_path):
    """`run --stages 01,02`; an artifact logged to the printed URI is a blob; 02 again reuses."""
    run_dir = tmp_path / "r"
    first = tunekit_cli("run", "--stages", "01,02", "--run-dir", str(run_dir))
    try:
        assert first.returncode == 0, first.stdout + first.stderr
        assert "Still running: gcs-emulator, mlflow" in first.stdout
        tracking_uri = _printed(first.stdout, "Tracking URI:")
        emulator = _printed(first.stdout, "STORAGE_EMULATOR_HOST=").rstrip(")")
        artifact = tmp_path / "notes.txt"
        artifact.write_text("logged from outside the series\n")
        use_login(recorded_run(run_dir))
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment(recorded_run(run_dir).settings.experiment_name)
        with mlflow.start_run() as active:
            mlflow.log_artifact(str(artifact))
        gcs = storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=emulator),
        )
        blob_name = f"mlflow/{active.info.experiment_id}/{active.info.run_id}/artifacts/notes.txt"
        blob = gcs.bucket("tunekit").blob(blob_name)
        assert blob.download_as_text() == "logged from outside the series\n"

        pid = recorded_run(run_dir).state.section("services")["mlflow"]["pid"]
        again = tunekit_cli("run", "--stages", "02", "--run-dir", str(run_dir))
        assert again.returncode == 0, again.stdout + again.stderr
        state = recorded_run(run_dir).state
        assert state.section("services")["mlflow"]["pid"] == pid
        assert state.section("mlflow")["reused"] is True
    finally:
        down = tunekit_cli("down", "--run-dir", str(run_dir))
    assert down.returncode == 0
    assert "stopped" in down.stdout
    assert running_services(recorded_run(run_dir)) == {}


def test_stages_without_a_notebook_are_refused_before_anything_starts(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for stage in ("01-cluster", "07-cleanup"):
        shutil.copy(REPO / "notebooks" / f"{stage}.ipynb", notebooks)
    result = tunekit_cli("run", "--notebooks", str(notebooks), "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "no notebook for 02-mlflow, 03-finetune, 04-registry" in result.stdout
    assert not (tmp_path / "r").exists()
