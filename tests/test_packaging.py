"""The repository as a new user meets it: README commands, pins, CI entry, lint."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from .conftest import REPO


def test_readme_gives_the_two_setup_commands():
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def test_every_path_the_readme_quotes_exists():
    readme = (REPO / "README.md").read_text() + (REPO / "DEVELOPERS.md").read_text()
    quoted = set(
        re.findall(r"`((?:notebooks|lib|ci|tests|docker|manifests|terraform)/[^`\s]*)`", readme)
    )
    assert quoted
    missing = [q for q in quoted if not (REPO / q.rstrip("/")).exists()]
    assert not missing


def test_every_make_target_the_readme_quotes_exists():
    docs = (REPO / "README.md").read_text() + (REPO / "DEVELOPERS.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    quoted = set(re.findall(r"make ([a-z][\w-]*)", docs)) - {"TORCH"}
    assert quoted <= targets


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci
    assert (REPO / ".ci" / "run").stat().st_mode & 0o111


def test_the_tunekit_command_is_installed():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["tunekit"] == "tunekit.cli:app"
    result = subprocess.run(
        [sys.executable, "-m", "tunekit", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("run", "down", "ui", "settings", "status"):
        assert command in result.stdout


def test_environment_yml_has_the_same_pins():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = set(pyproject["dependencies"]) | set(pyproject["optional-dependencies"]["dev"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins <= set(pip)
    assert "torch==2.13.0" in pip and "-e ." in pip
    makefile = (REPO / "Makefile").read_text()
    assert "TORCH ?= torch==2.13.0" in makefile


@pytest.mark.parametrize(
    "args", [["check", "lib", "tests", "notebooks"], ["format", "--check", "lib", "tests"]]
)
def test_ruff_is_clean(args):
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    result = subprocess.run([ruff, *args], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
