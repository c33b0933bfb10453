"""Shared fixtures. Every test writes its runs under a temporary directory, never runs/."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tunekit
from tunekit.services import running_services, stop_all

# No test reaches the Hugging Face Hub; libraries read this once, at import, so set it first.
os.environ["HF_HUB_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parents[1]
# A fine-tune small enough for a test: seconds of training, a few checkpoints, a small eval split.
TINY_FINETUNE = [
    *("-p", "max_steps=20", "-p", "save_steps=10", "-p", "logging_steps=5"),
    *("-p", "synthetic_rows=600", "-p", "eval_size=20", "-p", "tiny_pretrain_steps=100"),
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs under tmp_path; no TUNEKIT_* or cloud settings leak in from the environment."""
    for name in list(os.environ):
        if name.startswith("TUNEKIT_") or name == "GOOGLE_CLOUD_PROJECT":
            monkeypatch.delenv(name)
    monkeypatch.setenv("TUNEKIT_RUNS_DIR", str(tmp_path / "runs"))


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tunekit.Run]:
    """A fresh local run; whatever it started is stopped afterwards."""
    the_run = tunekit.start_run(tmp_path / "runs" / "test-run", service_timeout_s=60)
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


def tunekit_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run the real `tunekit` command line."""
    return subprocess.run(
        [sys.executable, "-m", "tunekit", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
