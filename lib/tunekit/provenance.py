"""What a fine-tune was made from, as it records it and as `tunekit reproduce` checks it: the
kit's commit (and whether its tree had changes), the versions of the training packages, and the
digests of the rows it trained and was evaluated on."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from contextlib import suppress
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

TRAINING_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "mlflow")
UNKNOWN = "unknown"


def kit_version() -> str:
    """The installed tunekit's version (`0+unknown` from a source tree that is not installed)."""
    try:
        return version("tunekit")
    except PackageNotFoundError:
        return "0+unknown"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit() -> str:
    """The kit's commit: $TUNEKIT_GIT_COMMIT (baked into images), else git, else 'unknown'."""
    return os.environ.get("TUNEKIT_GIT_COMMIT") or _git("rev-parse", "HEAD") or UNKNOWN


def git_dirty() -> str:
    """'true' if the kit's tracked files differ from its commit, 'false' if not, 'unknown'
    where there is no checkout (an image records its build's: $TUNEKIT_GIT_DIRTY)."""
    if found := os.environ.get("TUNEKIT_GIT_DIRTY"):
        return found
    status = _git("status", "--porcelain", "--untracked-files=no")
    return UNKNOWN if status is None else str(bool(status)).lower()


def package_versions(packages: tuple[str, ...] = TRAINING_PACKAGES) -> dict[str, str]:
    """{package: version} of `packages` installed here (local builds' `+cpu` suffix dropped:
    it names the wheel, not the code)."""
    found = {}
    for package in packages:
        with suppress(PackageNotFoundError):
            found[package] = version(package).split("+")[0]
    return found


def data_tag(split: str) -> str:
    """The run tag holding the digest of split `split` ("train" or "eval")."""
    return f"tunekit.data.{split}_sha256"


def rows_digest(rows: list[dict]) -> str:
    """A sha256 of every row, in order. MLflow's own dataset digest (the run's inputs) hashes
    only the first 10,000 rows and the row count (mlflow/data/digest_utils.py), so a changed
    row past those would go unnoticed."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()
