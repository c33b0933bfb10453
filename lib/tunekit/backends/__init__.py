"""Backends behind the stage functions, one per profile, chosen by the run's settings."""

from __future__ import annotations

from types import ModuleType

from tunekit.run import Run


def backend_for(run: Run) -> ModuleType:
    """The module implementing the stages for the run's profile."""
    from tunekit.backends import gke, local

    return {"local": local, "gke": gke}[run.settings.profile]
