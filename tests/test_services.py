"""Managed local services: start, reuse, restart, stop, and clear failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

import tunekit
from tunekit.local_services import (
    ServiceError,
    ServiceSpec,
    ensure_service,
    healthy,
    port_is_free,
    running_services,
    stop_all,
    stop_service,
)


def http_server(name: str = "web", **env: str) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        command=[sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"],
        env=env,
    )


def python_service(code: str, name: str = "broken") -> ServiceSpec:
    return ServiceSpec(name=name, command=[sys.executable, "-c", code])


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_start_records_and_serves(run):
    record = ensure_service(run, http_server())
    assert record["reused"] is False
    assert healthy(record["url"])
    assert record["url"].startswith("http://127.0.0.1:")
    assert run.state.section("services")["web"]["pid"] == record["pid"]
    assert (run.dir / "logs" / "web.log").is_file()


def test_healthy_service_is_reused(run):
    first = ensure_service(run, http_server())
    again = ensure_service(run, http_server())
    assert again["reused"] is True
    assert again["pid"] == first["pid"]


def test_changed_spec_restarts_on_the_same_port(run):
    first = ensure_service(run, http_server(MODE="a"))
    second = ensure_service(run, http_server(MODE="b"))
    assert second["reused"] is False
    assert second["pid"] != first["pid"]
    assert second["port"] == first["port"]
    assert gone(first["pid"])


def test_dead_service_is_started_again(run):
    first = ensure_service(run, http_server())
    os.kill(first["pid"], signal.SIGKILL)
    psutil.Process(first["pid"]).wait(10)
    second = ensure_service(run, http_server())
    assert second["reused"] is False
    assert healthy(second["url"])


def test_stop_ends_the_process_and_frees_the_port(run):
    record = ensure_service(run, http_server())
    assert stop_service(run, "web") is True
    assert gone(record["pid"])
    assert port_is_free(record["port"])
    assert "web" not in run.state.section("services")
    assert stop_service(run, "web") is False  # twice is fine


def test_stop_all_stops_the_children_too(run):
    spec = ServiceSpec(
        name="parent",
        command=[
            sys.executable,
            "-c",
            "import subprocess, sys; subprocess.Popen([sys.executable, '-m', 'http.server',"
            " '{port}', '--bind', '127.0.0.1']).wait()",
        ],
    )
    record = ensure_service(run, spec)
    children = psutil.Process(record["pid"]).children(recursive=True)
    assert children
    assert stop_all(run) == ["parent"]
    assert all(gone(pid) for pid in [record["pid"], *(c.pid for c in children)])
    assert running_services(run) == {}


def test_early_exit_reports_the_log(run):
    with pytest.raises(ServiceError, match=r"exited with code 3(.|\n)*bad config value"):
        ensure_service(run, python_service("print('bad config value'); raise SystemExit(3)"))
    assert "broken" not in run.state.section("services")


def test_no_answer_times_out_and_leaves_nothing_running(tmp_path):
    slow = tunekit.start_run(tmp_path / "slow", service_timeout_s=1)
    spec = python_service("import time; print('still loading', flush=True); time.sleep(60)")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"within 1 s \(setting service_timeout_s\)"):
        ensure_service(slow, spec)
    assert time.monotonic() - started < 20
    assert running_services(slow) == {}
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if "still loading" in " ".join(p.info["cmdline"] or [])
    ]


def test_a_reused_pid_is_never_killed(run):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.state.update(
            "services",
            {
                "old": {
                    "pid": stranger.pid,
                    "create_time": 1.0,
                    "port": 1,
                    "url": "http://127.0.0.1:1",
                }
            },
        )
        assert running_services(run) == {}
        assert stop_all(run) == []
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def _servers_of(run) -> list[int]:
    """The `http.server` processes running in the run dir (services run there)."""
    return [
        p.pid
        for p in psutil.process_iter(["cmdline", "cwd"])
        if "http.server" in (p.info["cmdline"] or []) and p.info["cwd"] == str(run.dir)
    ]


def test_concurrent_callers_get_one_server(run):
    """Two stages asking for the same service at once (two notebooks, or a notebook and a
    `tunekit run`): one starts it, the other waits and reuses it."""
    spec, barrier = http_server(), threading.Barrier(2)
    results: list[dict] = []
    errors: list[BaseException] = []

    def ask() -> None:
        barrier.wait()
        try:
            results.append(ensure_service(run, spec))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(r["reused"] for r in results) == [False, True]
    assert results[0]["pid"] == results[1]["pid"] == run.state.section("services")["web"]["pid"]
    assert _servers_of(run) == [results[0]["pid"]]


def test_a_service_starts_while_another_process_trains(run):
    """The run dir held by a fine-tune in another notebook: services start here all the same."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from tunekit.run_lock import hold\n"
         "with hold(Path(sys.argv[1]), 'fine-tune job-1'):\n"
         "    print('held', flush=True); time.sleep(60)", str(run.dir)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout and holder.stdout.readline().strip() == "held"
        assert healthy(ensure_service(run, http_server())["url"])
    finally:
        holder.kill()
        holder.wait()
