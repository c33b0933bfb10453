"""Local services: processes on 127.0.0.1, logged in the run dir, recorded in the state.

A service is started once and reused while it is healthy and was started the same way; one
caller at a time checks and starts it (`run_lock.starting`), so two stages asking at once get one
server. `stop_service` ends its whole process group. Records live in the state's `services`
section.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import requests

from tunekit import progress, run_lock
from tunekit.credentials import child_environment
from tunekit.run import Run

HOST = "127.0.0.1"


class ServiceError(RuntimeError):
    """A service could not be started."""


@dataclass(frozen=True)
class ServiceSpec:
    """How to start a service: `{port}` in the command and the env is replaced by its port.

    It is up when `health_path` answers 200, or, for a service that speaks no HTTP, when
    `ready(port)` is true. `prepare` runs before each start (e.g. a database migration);
    `stop_signal` asks it to stop (SIGKILL follows after a grace period).
    """

    name: str
    command: list[str]
    health_path: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    ready: Callable[[int], bool] | None = None
    prepare: Callable[[], None] | None = None
    stop_signal: signal.Signals = signal.SIGTERM

    def is_up(self, record: dict[str, Any]) -> bool:
        if self.ready:
            return self.ready(record["port"])
        return healthy(record["url"] + self.health_path)

    def argv(self, port: int) -> list[str]:
        return [a.replace("{port}", str(port)) for a in self.command]

    def fingerprint(self, port: int) -> str:
        """What decides reuse; a hash, so that no environment value lands in the state."""
        blob = json.dumps([self.argv(port), sorted(self.env.items())])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ensure_service(run: Run, spec: ServiceSpec) -> dict[str, Any]:
    """Reuse `spec.name` if it is up, healthy and started the same way; else start it. Another
    caller starting it meanwhile is waited for (up to service_timeout_s + 60 s), then reused."""
    wait_s = run.settings.service_timeout_s + 60
    with run_lock.starting(run.dir, spec.name, wait_s):
        record = run.state.section("services").get(spec.name)
        if record and _process(record):
            same = record.get("fingerprint") == spec.fingerprint(record["port"])
            if same and spec.is_up(record):
                return {**record, "reused": True}
            stop_service(run, spec.name)
        port = record["port"] if record and port_is_free(record["port"]) else free_port()
        return {**_start(run, spec, port), "reused": False}


def stop_service(run: Run, name: str, timeout: float = 15.0) -> bool:
    """Stop `name` and its children; True if something was running. Safe to repeat."""
    return name in stop_services(run, [name], timeout)


def stop_all(run: Run, timeout: float = 15.0) -> list[str]:
    """Stop every recorded service; the names of those that were running."""
    return stop_services(run, list(run.state.section("services")), timeout)


def stop_services(run: Run, names: list[str], timeout: float = 15.0) -> list[str]:
    """Stop `names` together (one grace period for all); forget their records."""
    records = run.state.section("services")
    alive = {n: p for n in names if n in records and (p := _process(records[n]))}
    terminate_groups(
        [(p, signal.Signals[records[n].get("stop_signal", "SIGTERM")]) for n, p in alive.items()],
        timeout,
    )
    with run.state.edit() as data:
        for name in names:
            data.get("services", {}).pop(name, None)
    return [n for n in names if n in alive]


def running_services(run: Run) -> dict[str, dict[str, Any]]:
    """The recorded services whose process is still alive."""
    return {n: r for n, r in run.state.section("services").items() if _process(r)}


def healthy(url: str, timeout: float = 2.0) -> bool:
    """True if `url` answers 200 (asked directly: a proxy from the environment is ignored)."""
    with requests.Session() as session:
        session.trust_env = False
        try:
            return session.get(url, timeout=timeout).status_code == 200
        except requests.RequestException:
            return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True if a server could listen on `port` now (as servers do, with SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file."""
    try:
        with path.open(errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except FileNotFoundError:
        return ""


def _start(run: Run, spec: ServiceSpec, port: int) -> dict[str, Any]:
    if spec.prepare:
        spec.prepare()
    run.logs_dir.mkdir(parents=True, exist_ok=True)
    log = run.logs_dir / f"{spec.name}.log"
    url = f"http://{HOST}:{port}"
    with log.open("ab") as out:
        out.write(f"\n--- {datetime.now(UTC).isoformat()} starting on port {port}\n".encode())
        out.flush()
        popen = subprocess.Popen(
            spec.argv(port),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_environment({k: v.replace("{port}", str(port)) for k, v in spec.env.items()}),
            cwd=run.dir,
            start_new_session=True,
        )
    proc = psutil.Process(popen.pid)
    record = {
        "pid": popen.pid,
        "create_time": proc.create_time(),
        "port": port,
        "url": url,
        "log": str(log),
        "command": spec.argv(port),
        "fingerprint": spec.fingerprint(port),
        "stop_signal": spec.stop_signal.name,
        "started_at": datetime.now(UTC).isoformat(),
    }
    run.state.update("services", {spec.name: record})  # recorded first: a failure stays stoppable
    _wait_healthy(run, spec, popen, record, log)
    return record


def _wait_healthy(
    run: Run, spec: ServiceSpec, popen: subprocess.Popen, record: dict[str, Any], log: Path
) -> None:
    url = record["url"] + ("" if spec.ready else spec.health_path)
    timeout = run.settings.service_timeout_s
    started = time.monotonic()
    deadline, shown = started + timeout, 0
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            stop_service(run, spec.name)
            raise ServiceError(
                f"{spec.name} exited with code {popen.returncode} before answering {url}; "
                f"last lines of {log}:\n{log_tail(log)}"
            )
        if spec.is_up(record):
            progress.started(spec.name, time.monotonic() - started, url)
            return
        if (elapsed := time.monotonic() - started) >= shown + 1:
            progress.waiting(spec.name, elapsed, url)
            shown = int(elapsed)
        time.sleep(0.25)
    stop_service(run, spec.name)
    raise TimeoutError(
        f"{spec.name} did not answer {url} within {timeout:.0f} s (setting service_timeout_s); "
        f"last lines of {log}:\n{log_tail(log)}"
    )


def _process(record: dict[str, Any]) -> psutil.Process | None:
    """The recorded process if it still runs (same pid *and* start time), else None."""
    try:
        proc = psutil.Process(record["pid"])
        if abs(proc.create_time() - record["create_time"]) > 0.05:
            return None  # the pid was reused by another process
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError):
        return None


def terminate_groups(leaders: list[tuple[psutil.Process, signal.Signals]], timeout: float) -> None:
    """Send each leader's process group (service and workers) its stop signal, and the
    children that left the group too; SIGKILL what outlives the grace period."""
    groups: list[tuple[int, signal.Signals, list[psutil.Process]]] = []
    for leader, stop in leaders:
        with suppress(psutil.NoSuchProcess):
            groups.append((leader.pid, stop, [leader, *leader.children(recursive=True)]))
    procs = [p for _, _, members in groups for p in members]
    for final in (False, True):
        for pgid, stop, members in groups:
            sig = signal.SIGKILL if final else stop
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
            for p in members:
                with suppress(ProcessLookupError, PermissionError, psutil.NoSuchProcess):
                    if os.getpgid(p.pid) != pgid:
                        p.send_signal(sig)
        _, procs = psutil.wait_procs(procs, timeout=timeout)
        if not procs:
            return
