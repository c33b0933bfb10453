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


def test_make_test_installs_the_system_packages_the_tests_need():
    """The browser tests need Debian's chromium, the PostgreSQL tests its postgresql: `make
    test` installs them where missing, not only .ci/run."""
    plan = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True)
    assert "apt-get install" in plan.stdout
    assert "chromium" in plan.stdout and "postgresql" in plan.stdout


@pytest.fixture(scope="module")
def installed_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kit as Colab or Workbench get it: a wheel built from the repository, installed into
    a folder of its own (no checkout next to it; its dependencies are this environment's)."""
    tmp = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(tmp / "wheel"), str(REPO)], check=True,
                   capture_output=True)  # fmt: skip
    (wheel,) = (tmp / "wheel").glob("tunekit-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target",
                    str(tmp / "site"), str(wheel)], check=True, capture_output=True)  # fmt: skip
    return tmp / "site"


def _in_installed(site: Path, code: str, home: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=home, capture_output=True, text=True,
        env={"PYTHONPATH": str(site), "TUNEKIT_HOME": str(home / ".tunekit"),
             "PATH": "/usr/bin:/bin", "HOME": str(home)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_an_installed_kit_carries_what_the_gke_profile_needs(installed_kit, tmp_path):
    """Item 14: the gke profile looked for terraform/, docker/ and cloudbuild.yaml two folders
    above the package, which in site-packages is not the project."""
    code = """
from pathlib import Path
from tunekit import project_files as f
root = f.root()
print(root)
print(f.terraform_dir())
context = f.build_context(Path("staging"))
for p in ("cloudbuild.yaml", "pyproject.toml", "README.md", "docker/finetune/Dockerfile",
          "docker/kserve/requirements.txt", "lib/tunekit/train.py", "lib/tunekit/serve.py"):
    assert (context / p).is_file(), p
assert not (context / "lib/tunekit/_project").exists()
"""
    root, terraform = _in_installed(installed_kit, code, tmp_path).split()
    assert Path(root) == installed_kit / "tunekit" / "_project"
    assert Path(terraform) == tmp_path / ".tunekit" / "terraform"  # writable; state stays
    assert (Path(terraform) / "main.tf").read_text() == (REPO / "terraform/main.tf").read_text()


def test_an_installed_kit_makes_mlservers_environment_itself(installed_kit, tmp_path):
    """Stage 06 (local) needs MLServer's own environment; without a checkout there is no
    .venv-mlserver: the kit creates one from the requirements it carries, in TUNEKIT_HOME."""
    code = """
from tunekit.backends.local import mlserver_env
calls = []
mlserver_env.create = lambda dest, torch="": calls.append(dest) or dest / "bin" / "mlserver"
print(mlserver_env.executable())
print(mlserver_env.requirements())
try:
    mlserver_env.executable(create_missing=False)
except mlserver_env.MLServerUnavailable as e:
    print("refused:", e)
"""
    out = _in_installed(installed_kit, code, tmp_path).splitlines()
    assert out[0] == str(tmp_path / ".tunekit" / "venv-mlserver" / "bin" / "mlserver")
    assert out[1].endswith("tunekit/_project/docker/kserve/requirements.txt")
    assert out[2].startswith("refused: MLServer is not installed")
