"""The run's generated credentials: MLflow's admin and reader logins, its database and key.

Each has the name of the Kubernetes Secret that holds it on GKE. On the local profile the same
credentials live in `<run>/secrets.json`, readable by its owner only (0600), the stand-in for those
Secrets: the local processes read the same Secret keys their containers would. No value is ever
printed, logged, or written anywhere else (state.json records only that a Secret exists).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from filelock import FileLock

from tunekit.state import write_atomic

SECRETS_FILE = "secrets.json"

# Secret names (the same on GKE) and the user each one logs in as.
ADMIN = "mlflow-auth"  # MLflow's admin: stage 02, the fine-tune, stage 04's registration
READER = "mlflow-reader"  # a read-only MLflow user: the model servers
DATABASE = "mlflow-db"  # MLflow's PostgreSQL user
SERVER_KEY = "mlflow-server-key"  # basic-auth's Flask secret key (CSRF), local profile only
USERNAMES = {ADMIN: "admin", READER: "reader", DATABASE: "mlflow"}
# The variables MLflow's client reads a login from; a child process gets them only from its spec.
LOGIN_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def new_login(name: str) -> dict[str, str]:
    """A fresh login for Secret `name`: its user and a random password.

    Hex only: the MLflow chart pastes the values into a sed expression and a database URI, where
    `/`, `&`, `%` or `@` would break (templates/deployment.yaml, auth_ini_configmap.yaml of
    community-charts/mlflow 1.11.5); MLflow wants at least 12 characters.
    """
    return {"username": USERNAMES[name], "password": secrets.token_hex(16)}


class LocalSecrets:
    """`<run>/secrets.json` (0600): {secret name: {key: value}}, the local profile's Secrets."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / SECRETS_FILE
        self._lock = FileLock(f"{self.path}.lock", timeout=30)

    def get(self, name: str) -> dict[str, str] | None:
        """Secret `name`, or None when it was never created."""
        return self._read().get(name)

    def value(self, name: str, key: str) -> str | None:
        """One key of Secret `name` (what a container's `secretKeyRef` names), or None."""
        return (self.get(name) or {}).get(key)

    def ensure(self, name: str) -> dict[str, str]:
        """Secret `name`, created with fresh values if it does not exist yet."""
        with self._lock:
            data = self._read()
            if name not in data:
                fresh = new_login(name) if name in USERNAMES else {"key": secrets.token_hex(32)}
                data[name] = fresh
                self._write(data)
            return data[name]

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        write_atomic(self.path, json.dumps(data, indent=2))  # a new file, 0600 (mkstemp)


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a process the kit starts: this one's without an MLflow login (a
    workload gets its login from its own spec, as its pod does), plus `extra`."""
    inherited = {k: v for k, v in os.environ.items() if k not in LOGIN_VARIABLES}
    return {**inherited, **extra}
