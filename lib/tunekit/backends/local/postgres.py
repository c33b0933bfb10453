"""PostgreSQL for MLflow on the local profile (`-p mlflow_backend=postgresql`), as on GKE.

A server from the Debian package (`postgresql`), its data under `<run>/postgres/`, listening on
127.0.0.1 only, with password logins (scram-sha-256) for the user of the `mlflow-db` credential.
It holds the same two databases as the cluster's PostgreSQL: MLflow's runs and registry, and
the basic-auth app's users. MLflow reaches it the way the chart's pod does: the libpq variables
PGHOST, PGPORT, PGDATABASE, PGUSER and PGPASSWORD, and the URI `postgresql+psycopg2://`.

PostgreSQL refuses to run as root. Run as root (a container, CI), tunekit starts it in a user
namespace in which it is an ordinary user (`unshare --map-user`); its files stay root's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from contextlib import closing
from pathlib import Path

from tunekit.credentials import DATABASE, LocalSecrets
from tunekit.local_services import ServiceSpec
from tunekit.run import Run
from tunekit.tracking import AUTH_DATABASE, TRACKING_DATABASE

DATABASES = (TRACKING_DATABASE, AUTH_DATABASE)  # runs and registry; the basic-auth users
BACKEND_URI = "postgresql+psycopg2://"  # the rest from the PG* environment, as in the chart
AUTH_URI = f"postgresql+psycopg2:///{DATABASES[1]}"
_UNPRIVILEGED = ("unshare", "--user", "--map-user=65534", "--map-group=65534")  # nobody


class PostgresError(RuntimeError):
    """PostgreSQL is missing or could not be set up."""


def bin_dir() -> Path:
    """The PostgreSQL programs: $TUNEKIT_POSTGRES_BIN, else the newest Debian server package."""
    if found := os.environ.get("TUNEKIT_POSTGRES_BIN"):
        return Path(found)
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3])
    )
    if debian:
        return debian[-1].parent
    if found := shutil.which("postgres"):
        return Path(found).parent
    raise PostgresError(
        "PostgreSQL is not installed: `make install` installs Debian's `postgresql` "
        "(or set TUNEKIT_POSTGRES_BIN to the folder with `postgres` and `initdb`)"
    )


def _unprivileged(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    if not shutil.which("unshare"):
        raise PostgresError("PostgreSQL cannot run as root and `unshare` (util-linux) is missing")
    return [*_UNPRIVILEGED, *argv]


def data_dir(run: Run) -> Path:
    return run.dir / "postgres" / "data"


def login(run: Run) -> dict[str, str]:
    """The database user and password (the `mlflow-db` credential)."""
    return LocalSecrets(run.dir).ensure(DATABASE)


def environment(run: Run, port: int | str) -> dict[str, str]:
    """What the MLflow pod gets from the chart: where the database is and how to log in."""
    user = login(run)
    return {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(port),
        "PGDATABASE": DATABASES[0],
        "PGUSER": user["username"],
        "PGPASSWORD": user["password"],
    }


def initialize(run: Run) -> None:
    """`initdb` once per run: password logins only, the password never on a command line."""
    data = data_dir(run)
    if (data / "PG_VERSION").is_file():
        return
    user = login(run)
    data.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", prefix="tunekit-pw-") as pwfile:  # 0600, deleted
        pwfile.write(user["password"] + "\n")
        pwfile.flush()
        argv = [str(bin_dir() / "initdb"), "-D", str(data), "-U", user["username"],
                f"--pwfile={pwfile.name}", "--auth=scram-sha-256", "-E", "UTF8",
                "--no-instructions"]  # fmt: skip
        done = subprocess.run(_unprivileged(argv), capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)  # nothing half-written
        raise PostgresError(f"initdb failed (exit code {done.returncode}):\n{done.stderr[-2000:]}")


def accepts_logins(run: Run, port: int) -> bool:
    """True when the server takes a login on `port` (it refuses them while starting up)."""
    import psycopg2

    try:
        with closing(psycopg2.connect(**_connect_args(run, port, "postgres"))):
            return True
    except psycopg2.OperationalError:
        return False


def ensure_databases(run: Run, port: int) -> None:
    """Create MLflow's two databases unless they exist."""
    import psycopg2

    with closing(psycopg2.connect(**_connect_args(run, port, "postgres"))) as conn:
        conn.autocommit = True
        with conn.cursor() as cursor:
            for name in DATABASES:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{name}"')


def _connect_args(run: Run, port: int, database: str) -> dict[str, object]:
    user = login(run)
    return {"host": "127.0.0.1", "port": port, "dbname": database, "user": user["username"],
            "password": user["password"], "connect_timeout": 2}  # fmt: skip


def server_spec(run: Run) -> ServiceSpec:
    """The server, on 127.0.0.1 only (no Unix socket); SIGINT is its fast, clean shutdown."""
    command = [str(bin_dir() / "postgres"), "-D", str(data_dir(run)), "-h", "127.0.0.1",
               "-p", "{port}", "-c", "unix_socket_directories="]  # fmt: skip
    return ServiceSpec(
        name="postgres",
        command=_unprivileged(command),
        ready=lambda port: accepts_logins(run, port),
        prepare=lambda: initialize(run),
        stop_signal=signal.SIGINT,
    )
