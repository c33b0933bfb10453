"""The platforms behind the stage functions, one `Backend` per profile (and the gke plan)."""

from __future__ import annotations

from tunekit.backends.base import Backend
from tunekit.run import Run


def backend_for(run: Run) -> Backend:
    """The backend of the run's profile: `Local`, `Gke`, or the gke `Plan` (`dry_run`)."""
    if run.settings.profile == "local":
        from tunekit.backends.local import Local

        return Local()
    from tunekit.backends.gke import Gke, Plan

    return Plan() if run.settings.dry_run else Gke()


__all__ = ["Backend", "backend_for"]
