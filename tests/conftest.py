"""Shared fixtures. Every test writes its runs under a temporary directory, never runs/."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import tunekit
from tunekit.backends.local.finetune import MODELS_DIR_ENV
from tunekit.credentials import LOGIN_VARIABLES, SECRETS_FILE, child_environment
from tunekit.local_services import running_services, stop_all

# No test reaches the Hugging Face Hub; libraries read this once, at import, so set it first.
os.environ["HF_HUB_OFFLINE"] = "1"
# The suite runs in parallel (pytest-xdist, `-n auto`): each worker gets its share of the cores
# for PyTorch, here and in every process it starts (trainers, servers). Without this, two
# trainings at once spin 4 OpenMP threads on 2 cores and run many times slower than one.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _WORKERS))

REPO = Path(__file__).resolve().parents[1]
# A fine-tune small enough for a test: seconds of training, a few checkpoints, a small eval split.
TINY_FINETUNE = [
    *("-p", "max_steps=20", "-p", "save_steps=10", "-p", "logging_steps=5"),
    *("-p", "synthetic_rows=600", "-p", "eval_size=20", "-p", "eval_set_rows=12"),
]


# One cache of built base models for the whole suite (module fixtures included), as a user has
# one for all their runs: tiny-gemma2 is built once per recipe and data, not once per module.
_MODELS = tempfile.TemporaryDirectory(prefix="tunekit-test-models-")
os.environ[MODELS_DIR_ENV] = _MODELS.name


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end modules first: run in parallel (`--dist loadscope`, one module per worker
    at a time), the long ones then overlap each other instead of ending the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs under tmp_path; no TUNEKIT_* or cloud settings leak in from the environment."""
    for name in list(os.environ):
        if name == MODELS_DIR_ENV:
            continue
        if name.startswith("TUNEKIT_") or name in ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_REGION"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TUNEKIT_RUNS_DIR", str(tmp_path / "runs"))


@pytest.fixture(autouse=True)
def _no_mlflow_login() -> Iterator[None]:
    """Every test starts without an MLflow login, as a fresh kernel does: whatever talks to
    MLflow must log in itself (`tunekit.stages.use_login`)."""
    for name in LOGIN_VARIABLES:
        os.environ.pop(name, None)
    yield
    for name in LOGIN_VARIABLES:
        os.environ.pop(name, None)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tunekit.Run]:
    """A fresh local run; whatever it started is stopped afterwards. Its services get the
    default 120 s to answer: MLflow took over 60 s to start on two cores shared with other
    test runs (the `tunekit ui` tests failed so in CI, and passed on a quiet machine)."""
    the_run = tunekit.start_run(tmp_path / "runs" / "test-run")
    yield the_run
    stop_all(the_run)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tunekit.Run]:
    """A run with stages 01 and 02 up (GCS emulator, MLflow server), shared by a module."""
    the_run = tunekit.start_run(tmp_path_factory.mktemp("platform") / "run")
    tunekit.create_cluster(the_run)
    tunekit.start_mlflow(the_run)
    yield the_run
    tunekit.cleanup(the_run)
    assert not running_services(the_run)


def wait_for_checkpoint(run_dir: Path, step: int, deadline_s: float) -> tuple[dict, int]:
    """Once the run's fine-tune has completed checkpoint `step` or a later one: its state
    section (the trainer's pid, its job dir) and the checkpoint's step."""
    import time

    from tunekit.train_parts import last_complete_checkpoint

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        state_file = run_dir / "state.json"
        section = (
            json.loads(state_file.read_text()).get("finetune", {}) if state_file.exists() else {}
        )
        if section.get("pid") and section.get("job_dir"):
            done = last_complete_checkpoint(Path(section["job_dir"]) / "checkpoints")
            if done and int(done.rsplit("-", 1)[1]) >= step:
                return section, int(done.rsplit("-", 1)[1])
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint-{step} within {deadline_s} s")


def at_a_terminal() -> None:
    """Popen's `preexec_fn` for a command the test stops with Ctrl-C: SIGINT as at a terminal
    (a suite started in the background, e.g. `make test &`, passes its children SIGINT ignored,
    and Ctrl-C would then never reach them)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def tunekit_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run the real `tunekit` command line (with no MLflow login in its environment)."""
    return subprocess.run(
        [sys.executable, "-m", "tunekit", *args],
        cwd=cwd,
        env=child_environment(env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_secrets_stay_in_their_file(run_dir: Path, planted: list[str]) -> None:
    """No file of the run holds a `planted` secret, and the run's generated credentials (MLflow's
    logins, the database password) appear in no file but their own `secrets.json`."""
    store = run_dir / SECRETS_FILE
    assert store.is_file() and store.stat().st_mode & 0o777 == 0o600
    generated = [v for secret in json.loads(store.read_text()).values() for v in secret.values()]
    values = [*planted, *(v for v in generated if len(v) >= 12)]  # passwords and keys
    assert len(values) > len(planted)
    files = [p for p in run_dir.rglob("*") if p.is_file() and p != store]
    leaks = [
        (str(p.relative_to(run_dir)), value[:4] + "...")
        for p in files
        if p.stat().st_size < 10**8
        for value in values
        if value.encode() in p.read_bytes()
    ]
    assert not leaks


# --- profile gke, offline

GKE_SECRET = "hf_dry_run_secret_value_123"  # an HF token planted in the dry run's environment
CLOUD_TOOLS = ("terraform", "gcloud", "kubectl", "helm", "docker")


def fake_tools(folder: Path, bodies: dict[str, str]) -> tuple[str, Path]:
    """FAKE cloud tools (no GKE API, no cloud account here): each logs its call to `calls.log`,
    then runs its shell body. The PATH that finds them first, and the log."""
    tools, calls = folder / "bin", folder / "calls.log"
    tools.mkdir(parents=True)
    for tool, body in bodies.items():
        fake = tools / tool
        fake.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n{body}\n')
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return f"{tools}{os.pathsep}{os.environ['PATH']}", calls


def gke_series(run: tunekit.Run) -> None:
    for stage in (tunekit.create_cluster, tunekit.start_mlflow, tunekit.finetune,
                  tunekit.register_model, tunekit.deploy_simple, tunekit.deploy_kserve,
                  tunekit.cleanup):  # fmt: skip
        stage(run)


@pytest.fixture(scope="session")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tunekit.Run:
    """The gke series as a dry run, once per session, with stand-ins for the cloud tools on the
    PATH that record any call (there must be none) and an HF token in the environment (it must
    not leak)."""
    tmp = tmp_path_factory.mktemp("gke")
    path, calls = fake_tools(tmp, dict.fromkeys(CLOUD_TOOLS, "exit 1"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PATH", path)
        env.setenv("HF_TOKEN", GKE_SECRET)
        env.setenv("TUNEKIT_RUNS_DIR", str(tmp / "runs"))
        run = tunekit.start_run(tmp / "run", profile="gke", dry_run=True, project_id="demo-project")
        gke_series(run)
    assert not calls.exists(), f"a dry run called a cloud tool: {calls.read_text()}"
    return run


@pytest.fixture(scope="session")
def dry_run_rollout(tmp_path_factory: pytest.TempPathFactory) -> tunekit.Run:
    """The gke dry run during a rollout: stages 01-04, then a challenger recorded (version 7,
    as stage 04 records one beside a champion), then stages 05 and 06."""
    tmp = tmp_path_factory.mktemp("gke-rollout")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TUNEKIT_RUNS_DIR", str(tmp / "runs"))
        run = tunekit.start_run(tmp / "run", profile="gke", dry_run=True, project_id="demo-project")
        for stage in (tunekit.create_cluster, tunekit.start_mlflow, tunekit.finetune,
                      tunekit.register_model):  # fmt: skip
            stage(run)
        run.state.update("registry", {"challenger_version": 7})
        tunekit.deploy_simple(run)
        tunekit.deploy_kserve(run)
    return run


def rendered(run: tunekit.Run) -> list[dict]:
    """Every object a gke run wrote under gke/manifests/."""
    import yaml

    return [
        obj
        for path in sorted((run.dir / "gke" / "manifests").glob("*.yaml"))
        for obj in yaml.safe_load_all(path.read_text())
    ]


def rendered_one(run: tunekit.Run, kind: str, name: str = "") -> dict:
    found = [o for o in rendered(run) if o["kind"] == kind and name in o["metadata"]["name"]]
    assert found, f"no {kind} {name} rendered"
    return found[0]


def helm_values(run: tunekit.Run) -> dict:
    import yaml

    return yaml.safe_load((run.dir / "gke" / "helm" / "mlflow-values.yaml").read_text())
