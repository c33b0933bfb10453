"""`-p mlflow_backend=postgresql` on the local profile: MLflow on a real PostgreSQL server (the
Debian package, started in the run dir), as on the cluster. The series end to end on it is
tests/test_serve.py's run (01-06 on PostgreSQL)."""

from __future__ import annotations

from contextlib import closing

import psycopg2
import pytest

import tunekit
from tunekit.backends.local import postgres
from tunekit.local_services import running_services


def _query(run: tunekit.Run, database: str, sql: str) -> list[tuple]:
    port = run.state.section("services")["postgres"]["port"]
    args = {**postgres._connect_args(run, port, database)}
    with closing(psycopg2.connect(**args)) as conn, conn.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_postgres_serves_mlflow_with_password_logins_only(tmp_path):
    run = tunekit.start_run(tmp_path / "run", mlflow_backend="postgresql")
    try:
        tunekit.create_cluster(run)
        mlflow = tunekit.start_mlflow(run)
        assert mlflow["backend"] == "postgresql"
        databases = {r[0] for r in _query(run, "postgres", "SELECT datname FROM pg_database")}
        assert set(postgres.DATABASES) <= databases
        tables = {r[0] for r in _query(run, "mlflow", "SELECT tablename FROM pg_tables")}
        assert {"experiments", "runs", "registered_models", "alembic_version"} <= tables
        users = _query(run, "mlflow_auth", "SELECT username FROM users ORDER BY username")
        assert users == [("admin",), ("reader",)]
        port = run.state.section("services")["postgres"]["port"]
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(host="127.0.0.1", port=port, dbname="mlflow", user="mlflow",
                             password="not-the-password", connect_timeout=5)  # fmt: skip
        again = tunekit.start_mlflow(run)  # a re-run reuses the server and its data
        assert again["reused"] and again["experiment_id"] == mlflow["experiment_id"]
    finally:
        tunekit.cleanup(run)
    assert running_services(run) == {}


def test_stage_02_creates_the_auth_database_once(tmp_path):
    """The psql input stage 02 runs in the cluster's PostgreSQL pod creates the basic-auth
    users' database on a new volume and leaves it on one that has it (an init script would run
    only on an empty volume); run here with Debian's psql against a real server."""
    import subprocess

    from tunekit.backends.gke.workloads import CREATE_AUTH_DATABASE
    from tunekit.local_services import ensure_service, stop_all

    run = tunekit.start_run(tmp_path / "run", mlflow_backend="postgresql")
    server = ensure_service(run, postgres.server_spec(run))
    login = postgres.login(run)
    psql = [str(postgres.bin_dir() / "psql"), "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
            "-p", str(server["port"]), "-U", login["username"], "-d", "postgres"]  # fmt: skip
    env = {"PGPASSWORD": login["password"], "PATH": "/usr/bin:/bin"}
    try:
        for _ in range(2):
            done = subprocess.run(psql, input=CREATE_AUTH_DATABASE, env=env, text=True,
                                  capture_output=True, timeout=60)  # fmt: skip
            assert done.returncode == 0, done.stderr
        names = [r[0] for r in _query(run, "postgres", "SELECT datname FROM pg_database")]
        assert names.count(postgres.DATABASES[1]) == 1
    finally:
        stop_all(run)
