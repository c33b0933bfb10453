"""The wheel carries the gke profile's files that are not Python (terraform/, docker/,
cloudbuild.yaml, ...) as `tunekit/_project/`, for a kit installed without a checkout (Colab,
Vertex AI Workbench): see lib/tunekit/project_files.py. Everything else is in pyproject.toml."""

import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# The list lives in the package; read it without importing the package (and its dependencies,
# which a build environment does not have).
_spec = importlib.util.spec_from_file_location("files", HERE / "lib/tunekit/project_files.py")
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
FILES = _module.FILES


class BuildPyWithProjectFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install finds them in the checkout
        target = Path(self.build_lib) / "tunekit" / "_project"
        for name in FILES:
            source = HERE / name
            if source.is_dir():
                shutil.copytree(
                    source,
                    target / name,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"),
                )
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildPyWithProjectFiles})
