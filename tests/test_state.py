"""state.json: the hand-off between stages."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import time

import pytest

import tunekit
from tunekit.run import latest_run, list_runs, recorded_run
from tunekit.settings import SettingsError
from tunekit.state import RunState, StateError


def test_read_before_any_write_is_empty(tmp_path):
    assert RunState(tmp_path).read() == {}
    assert RunState(tmp_path).section("cluster") == {}


def test_update_merges_into_one_section(tmp_path):
    state = RunState(tmp_path)
    state.update("cluster", {"bucket": "b"})
    assert state.update("cluster", {"gcs_endpoint": "http://x"}) == {
        "bucket": "b",
        "gcs_endpoint": "http://x",
    }
    state.update("mlflow", {"tracking_uri": "http://y"})
    assert json.loads((tmp_path / "state.json").read_text()) == {
        "cluster": {"bucket": "b", "gcs_endpoint": "http://x"},
        "mlflow": {"tracking_uri": "http://y"},
    }


def _hammer(path: str, worker: int) -> None:
    state = RunState(path)
    for i in range(40):
        state.update("counts", {f"{worker}-{i}": i})


def test_concurrent_updates_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert len(RunState(tmp_path).section("counts")) == 3 * 40


def test_a_failed_edit_leaves_the_file_as_it_was(tmp_path):
    state = RunState(tmp_path)
    state.update("cluster", {"bucket": "b"})
    with pytest.raises(RuntimeError), state.edit() as data:
        data["cluster"]["bucket"] = "half-written"
        raise RuntimeError("stage crashed mid-edit")
    assert state.section("cluster") == {"bucket": "b"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".state-")] == []


def test_corrupt_state_names_the_file(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(StateError, match=r"state\.json is not valid JSON"):
        RunState(tmp_path).read()


def test_runs_record_settings_and_reopen_with_them(tmp_path):
    first = tunekit.start_run(experiment_name="exp-a")
    assert first.dir.parent == tmp_path / "runs"
    assert first.state.section("settings")["experiment_name"] == "exp-a"
    assert first.state.section("run")["id"] == first.id
    reopened = tunekit.open_run()  # the latest run, with its recorded settings
    assert reopened.dir == first.dir
    assert reopened.settings.experiment_name == "exp-a"
    assert tunekit.open_run(first.dir, experiment_name="exp-b").settings.experiment_name == "exp-b"
    # a notebook knob left unset (None or "") keeps what the run recorded, not the profile's value
    tunekit.open_run(first.dir, max_steps=60)
    again = tunekit.open_run(first.dir, profile="local", max_steps=None, model_id="")
    assert (again.settings.max_steps, again.settings.model_id) == (60, "tiny-gemma2")


def test_latest_run_is_the_newest(tmp_path):
    a = tunekit.start_run(tmp_path / "runs" / "20260101-000000-aaaa")
    b = tunekit.start_run(tmp_path / "runs" / "20260102-000000-bbbb")
    assert list_runs() == [a.dir, b.dir]
    assert latest_run() == b.dir


def test_open_run_without_any_run_says_what_to_do():
    with pytest.raises(FileNotFoundError, match="01-cluster"):
        tunekit.open_run()


def test_a_run_keeps_its_profile(tmp_path):
    run = tunekit.start_run(tmp_path / "r")
    with pytest.raises(SettingsError, match="profile: run r was started with profile 'local'"):
        tunekit.open_run(run.dir, profile="gke", project_id="p")


def test_invalid_settings_create_nothing(tmp_path):
    with pytest.raises(SettingsError, match="bucket"):
        tunekit.start_run(tmp_path / "never", bucket="NO")
    assert not (tmp_path / "never").exists()


def test_recorded_run_reads_without_writing(tmp_path):
    run = tunekit.start_run(tmp_path / "r")
    before = run.state.path.read_text()
    assert recorded_run(run.dir).settings.bucket == "tunekit"
    assert run.state.path.read_text() == before


# Writes a large file again and again until it is killed
REWRITER = """
import json, sys
from pathlib import Path
from tunekit.state import write_atomic
path, blob = Path(sys.argv[1]), "x" * 4_000_000
for i in range(10**6):
    write_atomic(path, json.dumps({"i": i, "blob": blob}))
    if i == 1:
        print("writing", flush=True)
"""


@pytest.mark.parametrize("delay", [0.0, 0.03, 0.07, 0.13, 0.2])
def test_a_writer_killed_mid_write_leaves_a_whole_file(tmp_path, delay):
    """result.json, state.json: a reader finds the old file or the new one, never a part."""
    path = tmp_path / "result.json"
    writer = subprocess.Popen([sys.executable, "-c", REWRITER, str(path)], stdout=subprocess.PIPE)
    try:
        assert writer.stdout and writer.stdout.readline() == b"writing\n"
        time.sleep(delay)
    finally:
        writer.kill()
        writer.wait()
    assert json.loads(path.read_text())["i"] >= 1
