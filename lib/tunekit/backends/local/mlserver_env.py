"""MLServer's own environment, for stage 06 on the local profile.

MLServer 1.7 needs an older FastAPI than MLflow's server, so `mlserver` runs from a virtual
environment of its own with the KServe image's stack (docker/kserve/requirements.txt). `make
install` creates it as .venv-mlserver in a checkout (`python -m
tunekit.backends.local.mlserver_env DEST`); an
installed kit without a checkout (Colab, Vertex AI Workbench) creates it the same way under
~/.tunekit the first time stage 06 needs it (a few minutes, once).

    python -m tunekit.backends.local.mlserver_env .venv-mlserver [--torch torch==2.13.0]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tunekit import project_files

MARKER = ".installed"  # holds the digest of what was installed


class MLServerUnavailable(RuntimeError):
    """No `mlserver` executable, and none could be made."""


def requirements() -> Path:
    return project_files.root() / "docker" / "kserve" / "requirements.txt"


def default_torch() -> str:
    """The torch of this environment (installed first and on its own: a plain `torch`
    requirement would pull a CUDA build), without a local build suffix such as +cu124."""
    try:
        return f"torch=={version('torch').split('+', 1)[0]}"
    except PackageNotFoundError:
        return "torch"


def _digest(torch: str) -> str:
    return hashlib.sha256((torch + "\n" + requirements().read_text()).encode()).hexdigest()[:16]


def create(dest: Path, torch: str = "", python: str = sys.executable) -> Path:
    """`dest` as MLServer's environment (kept when it has what the requirements ask): torch
    first, then the requirements. Returns its `mlserver`."""
    torch = torch or default_torch()
    dest = Path(dest)
    mlserver = dest / "bin" / "mlserver"
    wanted = _digest(torch)
    marker = dest / MARKER
    if mlserver.is_file() and marker.is_file() and marker.read_text().strip() == wanted:
        return mlserver
    print(f"Creating MLServer's environment in {dest} ({torch}, {requirements().name})",
          flush=True)  # fmt: skip
    if not (dest / "bin" / "python").is_file():
        if Path(python).resolve() == Path(sys.executable).resolve():
            venv.create(dest, with_pip=True)
        else:
            subprocess.run([python, "-m", "venv", str(dest)], check=True)
    pip = [str(dest / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    for step in (["--upgrade", "pip"], [torch], ["-r", str(requirements())]):
        done = subprocess.run([*pip, *step])
        if done.returncode != 0:
            raise MLServerUnavailable(
                f"`pip install {' '.join(step)}` into {dest} failed (exit code "
                f"{done.returncode}); set TUNEKIT_MLSERVER to an existing `mlserver` instead"
            )
    marker.write_text(wanted + "\n")
    return mlserver


def executable(create_missing: bool = True) -> str:
    """`mlserver`: $TUNEKIT_MLSERVER, the checkout's .venv-mlserver, the PATH, or (an installed
    kit) the one created under ~/.tunekit."""
    if found := os.environ.get("TUNEKIT_MLSERVER"):
        return found
    if project_files.in_checkout():
        checkout = project_files.CHECKOUT / ".venv-mlserver" / "bin" / "mlserver"
        if checkout.is_file():
            return str(checkout)
    if found := shutil.which("mlserver"):
        return found
    if project_files.in_checkout() or not create_missing:
        raise MLServerUnavailable(
            "MLServer is not installed: `make install` creates .venv-mlserver with it "
            "(or set TUNEKIT_MLSERVER to an `mlserver` executable)"
        )
    return str(create(project_files.home() / "venv-mlserver"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="the environment's folder")
    parser.add_argument("--torch", default="", help="torch requirement (default: this one's)")
    args = parser.parse_args(argv)
    try:
        print(create(args.dest, args.torch))
    except MLServerUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
