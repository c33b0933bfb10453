"""Profile gke: `Gke` runs the series on Google Kubernetes Engine, `Plan` only records it."""

from tunekit.backends.gke.backend import Gke
from tunekit.backends.gke.plan import Plan

__all__ = ["Gke", "Plan"]
