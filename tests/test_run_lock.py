"""One `tunekit run` or fine-tune per run dir: refused at once naming the holder, a dead holder
taken over, the holder's kernels let through. Holders are real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import pytest

import tunekit
from tunekit import run_lock
from tunekit.credentials import child_environment
from tunekit.local_services import running_services, stop_all
from tunekit.run_lock import LOCK_ENV, RunBusyError
from tunekit.state import RunState

from .conftest import tunekit_cli

# A process that holds the run dir, as `tunekit run` does; with a child (a trainer's stand-in)
HOLDER = """
import subprocess, sys, time
from pathlib import Path
from tunekit.run_lock import hold
with hold(Path(sys.argv[1]), sys.argv[2]) as lock:
    child = None
    if sys.argv[3] == "with-child":  # close_fds=False: only the descriptor's own flag protects it
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                 close_fds=False)
    print("held", child.pid if child else 0, flush=True)
    time.sleep(120)
"""
# What a stage does in a notebook kernel before it trains
FINETUNE_GUARD = """
import sys
from pathlib import Path
from tunekit.run_lock import exclusive
with exclusive(Path(sys.argv[1]), "fine-tune job-1"):
    print("inside", flush=True)
"""


@contextmanager
def holding(run_dir: Path, what: str, with_child: bool = False) -> Iterator[tuple[int, int]]:
    """A real process holding `run_dir` for `what`: (its pid, its child's pid or 0)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir), what, "with-child" if with_child else "-"],
        stdout=subprocess.PIPE,
        text=True,
        env=child_environment({}),
    )
    child = 0
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("held"), line
        child = int(line.split()[1])
        yield proc.pid, child
    finally:
        proc.kill()
        proc.wait()
        if child:
            with suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=child_environment(env),
        timeout=60,
    )


def test_a_second_tunekit_run_is_refused_at_once_naming_the_holder(tmp_path):
    run_dir = tmp_path / "r"
    tunekit.start_run(run_dir, experiment_name="first")
    recorded = RunState(run_dir).section("settings")
    try:
        with run_lock.hold(run_dir, "tunekit run --stages all"):
            started = time.monotonic()
            second = tunekit_cli(
                "run", "--stages", "01", "--run-dir", str(run_dir), "-p", "experiment_name=second"
            )
            took = time.monotonic() - started
        out = " ".join(second.stdout.split())
        assert second.returncode == 3, out
        assert f"in use by pid {os.getpid()} (tunekit run --stages all, since " in out
        assert took < 20
        # nothing of the second one happened: no stage ran, its settings were not recorded
        assert not (run_dir / "notebooks").exists()
        assert RunState(run_dir).section("settings") == recorded
        assert RunState(run_dir).section("services") == {}
    finally:
        tunekit_cli("down", "--run-dir", str(run_dir))


def test_a_dead_holder_is_taken_over(tmp_path):
    with holding(tmp_path, "tunekit run --stages 01-03") as (pid, _):
        with (
            pytest.raises(RunBusyError, match=rf"in use by pid {pid} \(tunekit run --stages 01-03"),
            run_lock.hold(tmp_path, "tunekit run --stages 04"),
        ):
            pass
        os.kill(pid, signal.SIGKILL)
        psutil.Process(pid).wait(10)
        started = time.monotonic()
        with run_lock.hold(tmp_path, "tunekit run --stages 04"):
            assert run_lock.run_lock(tmp_path).holder()["pid"] == os.getpid()
        assert time.monotonic() - started < 1


def test_what_a_holder_started_does_not_keep_its_lock(tmp_path):
    """A trainer or server outlives a killed `tunekit run`: the lock must not live on in it."""
    with holding(tmp_path, "tunekit run", with_child=True) as (pid, child):
        os.kill(pid, signal.SIGKILL)
        psutil.Process(pid).wait(10)
        assert psutil.Process(child).is_running()
        with run_lock.hold(tmp_path, "next run"):
            pass


def test_the_holders_kernels_work_under_its_hold_others_are_refused(tmp_path):
    with run_lock.hold(tmp_path, "tunekit run --stages 03") as lock:
        kernel = python(FINETUNE_GUARD, str(tmp_path), env=lock.child_env())
        notebook = python(FINETUNE_GUARD, str(tmp_path), env={})
        forged = python(FINETUNE_GUARD, str(tmp_path), env={LOCK_ENV: "0" * 16})
    assert kernel.returncode == 0 and "inside" in kernel.stdout, kernel.stderr
    for refused in (notebook, forged):
        assert refused.returncode == 1 and "inside" not in refused.stdout
        assert (
            f"RunBusyError: run dir {tmp_path} is in use by pid {os.getpid()} "
            "(tunekit run --stages 03, since "
        ) in refused.stderr
    # the series is over: its token covers nothing, the kernel takes the lock itself
    after = python(FINETUNE_GUARD, str(tmp_path), env=lock.child_env())
    assert after.returncode == 0 and "inside" in after.stdout


@pytest.mark.timeout(60)
def test_a_notebook_finetune_is_refused_while_a_series_runs(run):
    """Stage 03's local fine-tune, as a notebook calls it."""
    run.state.update("mlflow", {"tracking_uri": "http://127.0.0.1:9"})  # stage 02 ran
    with (
        holding(run.dir, "tunekit run --stages all") as (pid, _),
        pytest.raises(RunBusyError, match=rf"in use by pid {pid} \(tunekit run --stages all"),
    ):
        tunekit.finetune(run)
    assert not (run.dir / "finetune").exists()
    assert run.state.section("finetune") == {}


@pytest.mark.timeout(180)
def test_a_refused_finetune_leaves_stopped_services_stopped(run, capsys):
    """Stage 03 restarts a stopped MLflow or emulator, but only once it holds the run dir: a
    fine-tune refused because a series runs must not start servers under the series."""
    tunekit.create_cluster(run)
    tunekit.start_mlflow(run)
    stop_all(run)
    with (
        holding(run.dir, "tunekit run --stages all") as (pid, _),
        pytest.raises(RunBusyError, match=rf"in use by pid {pid} "),
    ):
        tunekit.finetune(run)
    assert running_services(run) == {}
    assert "started again" not in capsys.readouterr().out
