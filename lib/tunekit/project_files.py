"""The gke profile's files that are not Python: terraform/, docker/, cloudbuild.yaml.

In a checkout they are the repository's own. An installed kit (`pip install
"tunekit @ git+https://..."` in Colab or Vertex AI Workbench) carries a copy inside the package,
`tunekit/_project/`, which the wheel build puts there (setup.py); terraform then works in a
folder of its own under `$TUNEKIT_HOME` (default `~/.tunekit`), where its state stays between
sessions, and Cloud Build gets a build context assembled from the copy and the package.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parents[1]  # lib/tunekit -> the repository
BUNDLED = PACKAGE / "_project"
# What the wheel carries: what terraform, Cloud Build and the MLServer environment need.
FILES = ("terraform", "docker", "cloudbuild.yaml", ".gcloudignore", "pyproject.toml", "README.md")


class ProjectFilesMissing(RuntimeError):
    """Neither a checkout nor an installed copy of the project's files was found."""


def in_checkout() -> bool:
    return (CHECKOUT / "terraform").is_dir() and (CHECKOUT / "lib" / "tunekit").is_dir()


def root() -> Path:
    """The folder holding terraform/, docker/ and cloudbuild.yaml."""
    if in_checkout():
        return CHECKOUT
    if (BUNDLED / "terraform").is_dir():
        return BUNDLED
    raise ProjectFilesMissing(
        f"tunekit's terraform/, docker/ and cloudbuild.yaml are neither in a checkout nor in "
        f"{BUNDLED}: install the kit from its repository (a wheel built by its setup.py), "
        "or clone it and `pip install -e` it"
    )


def home() -> Path:
    """$TUNEKIT_HOME, else ~/.tunekit: what an installed kit keeps between sessions."""
    return Path(os.environ.get("TUNEKIT_HOME") or Path.home() / ".tunekit").expanduser()


def terraform_dir() -> Path:
    """Where terraform runs (and keeps its state): terraform/ of a checkout, else a folder under
    home() whose .tf files are refreshed from the installed copy each time."""
    source = root() / "terraform"
    if source.parent == CHECKOUT:
        return source
    target = home() / "terraform"
    target.mkdir(parents=True, exist_ok=True)
    for tf in source.iterdir():
        if tf.is_file():
            shutil.copy2(tf, target / tf.name)
    return target


def build_context(staging: Path) -> Path:
    """The folder `gcloud builds submit` uploads: the checkout, or `staging` filled with the
    installed copy and the package's source as lib/tunekit (what the Dockerfiles COPY)."""
    source = root()
    if source == CHECKOUT:
        return CHECKOUT
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(source, staging)
    shutil.copytree(
        PACKAGE,
        staging / "lib" / "tunekit",
        ignore=shutil.ignore_patterns("_project", "__pycache__", "*.pyc"),
    )
    return staging
