"""The local platform for real: GCS emulator + bucket (01), MLflow server (02), cleanup (07)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient

import tunekit
from tunekit import mlflow_record, tracking
from tunekit.backends import backend_for
from tunekit.backends.local import processes
from tunekit.local_services import healthy, running_services, stop_service
from tunekit.stages import use_login

from .conftest import REPO, at_a_terminal

KIND = "mlflow.experimentKind"  # the tag MLflow 3's UI picks an experiment's view by


def test_bucket_exists_on_the_emulator(platform):
    cluster = platform.state.section("cluster")
    assert cluster["bucket_url"] == "gs://tunekit"
    assert backend_for(platform).storage_client(platform).bucket("tunekit").exists()


def test_artifact_logged_through_mlflow_is_a_blob_in_the_bucket(platform, tmp_path):
    uri = platform.state.section("mlflow")["tracking_uri"]
    use_login(platform)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(platform.settings.experiment_name)
    report = tmp_path / "report.txt"
    report.write_text("execution accuracy 0.42\n")
    with mlflow.start_run() as active:
        mlflow.log_artifact(str(report), artifact_path="eval")
    experiment_id = active.info.experiment_id
    blob_name = f"mlflow/{experiment_id}/{active.info.run_id}/artifacts/eval/report.txt"
    blob = backend_for(platform).storage_client(platform).bucket("tunekit").blob(blob_name)
    assert blob.download_as_text() == "execution accuracy 0.42\n"
    # and MLflow reads it back through its proxy
    local = MlflowClient(uri).download_artifacts(active.info.run_id, "eval/report.txt", tmp_path)
    assert Path(local).read_text() == "execution accuracy 0.42\n"


def test_verify_artifact_store_keeps_checks_out_of_the_experiment(platform):
    result = tunekit.verify_artifact_store(platform)
    assert result["blobs"] and result["blobs"][0].endswith("probe.txt")
    use_login(platform)
    client = MlflowClient(platform.state.section("mlflow")["tracking_uri"])
    main = client.get_experiment_by_name(platform.settings.experiment_name)
    assert result["mlflow_run_id"] not in {
        r.info.run_id for r in client.search_runs([main.experiment_id])
    }


def test_the_experiment_opens_in_mlflows_model_training_view(platform):
    """MLflow 3's UI picks the experiment's view by the tag mlflow.experimentKind (its
    ExperimentKind enum in mlflow/server/js); untagged, it guesses, or shows the GenAI view."""
    use_login(platform)
    client = MlflowClient(platform.state.section("mlflow")["tracking_uri"])
    main = client.get_experiment_by_name(platform.settings.experiment_name)
    assert main.tags["mlflow.experimentKind"] == "custom_model_development"


def test_one_rule_for_the_experiments_kind_a_chosen_kind_stays(platform):
    """Stage 02 (`tracking.ensure_experiment`) and the trainer (`mlflow_record._open_experiment`)
    give an experiment without a kind the model-training one, and leave a kind someone chose
    in the UI (stage 02 used to overwrite it, the trainer did not)."""
    uri = platform.state.section("mlflow")["tracking_uri"]
    use_login(platform)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    untagged = client.create_experiment("made-outside-the-kit")
    mlflow_record._open_experiment("made-outside-the-kit")
    assert client.get_experiment(untagged).tags[KIND] == "custom_model_development"
    chosen = client.create_experiment("a-kind-chosen", tags={KIND: "genai_development"})
    assert tracking.ensure_experiment(uri, "a-kind-chosen") == chosen
    mlflow_record._open_experiment("a-kind-chosen")
    assert client.get_experiment(chosen).tags[KIND] == "genai_development"


def test_rerunning_stages_reuses_the_services(platform):
    pids = {n: r["pid"] for n, r in running_services(platform).items()}
    assert tunekit.create_cluster(platform)["reused"] is True
    assert tunekit.start_mlflow(platform)["reused"] is True
    assert {n: r["pid"] for n, r in running_services(platform).items()} == pids


def test_emulator_data_survives_a_restart(platform):
    backend_for(platform).storage_client(platform).bucket("tunekit").blob(
        "persist/me.txt"
    ).upload_from_string("kept")
    stop_service(platform, "gcs-emulator")
    assert tunekit.create_cluster(platform)["reused"] is False
    blob = backend_for(platform).storage_client(platform).bucket("tunekit").blob("persist/me.txt")
    assert blob.download_as_text() == "kept"
    # MLflow was started against the old emulator; it is restarted only if that changed
    assert tunekit.start_mlflow(platform)["tracking_uri"].startswith("http://127.0.0.1:")


def test_mlflow_creates_a_new_store_and_migrates_one_that_exists(platform, run):
    """No `mlflow db upgrade` before the first start (a second Python process, 4 s on two
    cores): the server creates a new SQLite store at its head revision itself (mlflow/cli
    `server` initialises the backend stores before it forks its workers). A store that exists
    is migrated first, as the chart's init container does on GKE."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    endpoint = "http://127.0.0.1:1"  # not contacted: the spec is only built
    assert processes.mlflow_server_spec(run, endpoint).prepare is None
    store = platform.dir / "mlflow" / "mlflow.db"
    with sqlite3.connect(store) as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    head = ScriptDirectory.from_config(_get_alembic_config(f"sqlite:///{store}")).get_current_head()
    assert revision == head
    existing = processes.mlflow_server_spec(platform, endpoint)
    assert existing.prepare is not None
    existing.prepare()  # at the head already: nothing to do, and no error


def test_mlflow_without_stage_01_says_so(run):
    with pytest.raises(RuntimeError, match="run stage 01-cluster first"):
        tunekit.start_mlflow(run)


def test_cleanup_stops_everything_and_can_run_twice(run):
    tunekit.create_cluster(run)
    tunekit.start_mlflow(run)
    urls = [r["url"] for r in running_services(run).values()]
    assert sorted(tunekit.cleanup(run)["stopped"]) == ["gcs-emulator", "mlflow"]
    assert running_services(run) == {}
    assert not any(healthy(u) for u in urls)
    assert tunekit.cleanup(run) == {"stopped": [], "still_running": []}


def test_ui_reopens_an_earlier_run_and_stops_on_ctrl_c(run):
    tunekit.create_cluster(run)
    experiment = tunekit.start_mlflow(run)["experiment_id"]
    tunekit.cleanup(run)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunekit", "ui", "--run-dir", str(run.dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=at_a_terminal,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("MLflow UI: http://127.0.0.1:"), line
        url = line.split()[2].split("/#")[0]
        assert f"/#/experiments/{experiment}" in line  # the same experiment, from the run's data
        assert healthy(f"{url}/health")
        assert run.state.section("mlflow")["tracking_uri"] == url  # later stages find it
        login = proc.stdout.readline().split()
        assert login[:3] == ["Log", "in", "as"] and login[3] == "admin"
        assert requests.get(f"{url}/api/2.0/mlflow/experiments/get?experiment_id={experiment}",
                            timeout=10).status_code == 401  # fmt: skip
        shown = requests.get(f"{url}/api/2.0/mlflow/experiments/get?experiment_id={experiment}",
                             auth=(login[3], login[-1]), timeout=10)  # fmt: skip
        assert shown.status_code == 200, shown.text
        assert "Ctrl-C" in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        proc.kill()
    assert running_services(run) == {}


def test_mlflow_asks_for_a_login_and_the_reader_only_reads(platform):
    """Local MLflow runs the cluster's basic-auth app: no login, no access; the servers' reader
    may read what the admin made but not change it (default permission READ)."""
    from tunekit.credentials import ADMIN, READER, LocalSecrets

    uri = platform.state.section("mlflow")["tracking_uri"]
    experiment = platform.state.section("mlflow")["experiment_id"]
    api = f"{uri}/api/2.0/mlflow/experiments"
    secrets = LocalSecrets(platform.dir)
    admin, reader = secrets.get(ADMIN), secrets.get(READER)
    get = {"params": {"experiment_id": experiment}, "timeout": 10}
    assert requests.get(f"{api}/get", **get).status_code == 401
    assert requests.get(f"{api}/get", auth=("admin", "wrong-password-1"), **get).status_code == 401
    as_reader = (reader["username"], reader["password"])
    assert requests.get(f"{api}/get", auth=as_reader, **get).status_code == 200
    rename = {"experiment_id": experiment, "new_name": "taken-over"}
    assert (
        requests.post(f"{api}/update", json=rename, auth=as_reader, timeout=10).status_code == 403
    )
    tag = {"experiment_id": experiment, "key": "k", "value": "v"}
    as_admin = (admin["username"], admin["password"])
    assert requests.post(f"{api}/set-experiment-tag", json=tag, auth=as_admin,
                         timeout=10).status_code == 200  # fmt: skip
