"""Profile local: `Local` runs the series as processes on this machine."""

from tunekit.backends.local.backend import Local

__all__ = ["Local"]
