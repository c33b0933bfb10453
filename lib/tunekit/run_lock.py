"""One `tunekit run` or fine-tune per run dir at a time, and one start of each service.

`<run>/locks/run.lock` is held by `tunekit run` for its whole series and by a fine-tune started
from a notebook: a second holder is refused at once, told the holder's pid and what it runs.
`<run>/locks/service-<name>.lock` is held while a service is checked and started: a second
caller waits, then reuses the server the first one started.

The locks are flocks on descriptors that no child inherits (a trainer or a server never holds
one), so the OS releases a lock when its holder dies: a stale holder is taken over. The file
names the holder, for the message the others get. The notebook kernels a `tunekit run` starts
work under its hold: it passes them its token in `TUNEKIT_RUN_LOCK`.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOCK_ENV = "TUNEKIT_RUN_LOCK"
LOCKS_DIR = "locks"


class RunBusyError(RuntimeError):
    """Another process holds the run dir (or is starting the same service)."""


class Lock:
    """An exclusive flock on `path`; while it is held, the file says who holds it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.token = ""
        self._fd: int | None = None

    def acquire(self, what: str, wait_s: float = 0.0) -> bool:
        """Take the lock within `wait_s` seconds (0: now) for `what`; False if it stays held."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + wait_s
        while not _flock(fd, fcntl.LOCK_EX):
            if time.monotonic() >= deadline:
                os.close(fd)
                return False
            time.sleep(0.1)
        self._fd, self.token = fd, secrets.token_hex(8)
        since = datetime.now(UTC).isoformat(timespec="seconds")
        holder = {"pid": os.getpid(), "what": what, "since": since, "token": self.token}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        return True

    def release(self) -> None:
        """Let go (closing the descriptor releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def is_held(self) -> bool:
        """True if some process (this one included) holds the lock now."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            if _flock(fd, fcntl.LOCK_SH):
                fcntl.flock(fd, fcntl.LOCK_UN)
                return False
            return True
        finally:
            os.close(fd)

    def holder(self) -> dict[str, Any]:
        """The holder as it recorded itself ({} if unknown: it may be writing it now)."""
        for _ in range(20):
            with suppress(OSError, ValueError):
                found = json.loads(self.path.read_text())
                if isinstance(found, dict):
                    return found
            time.sleep(0.05)
        return {}

    def child_env(self) -> dict[str, str]:
        """The environment that lets this holder's kernels work under its hold."""
        return {LOCK_ENV: self.token}


def run_lock(run_dir: Path) -> Lock:
    """The lock of the run dir: one `tunekit run` or fine-tune at a time."""
    return Lock(Path(run_dir) / LOCKS_DIR / "run.lock")


@contextmanager
def hold(run_dir: Path, what: str) -> Iterator[Lock]:
    """Hold the run dir for `what` until the block ends; RunBusyError naming the holder if
    another process holds it (a dead holder's lock is free: it is taken over)."""
    lock = run_lock(run_dir)
    if not lock.acquire(what):
        raise RunBusyError(busy_message(run_dir, lock.holder()))
    try:
        yield lock
    finally:
        lock.release()


@contextmanager
def exclusive(run_dir: Path, what: str) -> Iterator[None]:
    """Hold the run dir for `what`, unless this process runs under the `tunekit run` that
    holds it (its kernels have its token) or under an `exclusive` block of its own (a sweep's
    fine-tunes: the block puts its token in the environment)."""
    lock = run_lock(run_dir)
    token = os.environ.get(LOCK_ENV)
    if token and lock.holder().get("token") == token and lock.is_held():
        yield
        return
    with hold(run_dir, what) as held:
        os.environ[LOCK_ENV] = held.token
        try:
            yield
        finally:
            if token is None:
                os.environ.pop(LOCK_ENV, None)
            else:
                os.environ[LOCK_ENV] = token


@contextmanager
def starting(run_dir: Path, name: str, wait_s: float) -> Iterator[None]:
    """Hold the start of service `name`: another caller waits up to `wait_s` seconds for it."""
    lock = Lock(Path(run_dir) / LOCKS_DIR / f"service-{name}.lock")
    if not lock.acquire(f"starting {name}", wait_s):
        pid = lock.holder().get("pid", "unknown")
        raise RunBusyError(
            f"{name}: pid {pid} has been starting it for more than {wait_s:.0f} s "
            f"(setting service_timeout_s); its log is {Path(run_dir) / 'logs' / name}.log"
        )
    try:
        yield
    finally:
        lock.release()


def busy_message(run_dir: Path, holder: dict[str, Any]) -> str:
    pid = holder.get("pid", "unknown")
    doing = f"{holder.get('what', 'unknown')}, since {holder.get('since', '?')}"
    return (
        f"run dir {run_dir} is in use by pid {pid} ({doing}): one `tunekit run` or fine-tune "
        "at a time per run dir; wait for it to finish, or stop it"
    )


def _flock(fd: int, mode: int) -> bool:
    """Take an flock without waiting; False if another descriptor holds a conflicting one."""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
