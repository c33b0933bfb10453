"""Live feedback on long steps: a progress bar in JupyterLab, plain lines everywhere else.

In a notebook someone is looking at, `tqdm.auto` draws an ipywidgets bar. Headless (the series
runner sets TUNEKIT_HEADLESS, papermill outputs are read later as text, a terminal log) the same
progress is printed as one line per update, which reads well in an executed notebook and a log.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

HEADLESS_ENV = "TUNEKIT_HEADLESS"
# The lines of the trainer's output shown live (`tunekit.train`); Kubernetes' Job status lines
PROGRESS_PREFIXES = ("step ", "tunekit: ", "Job ")
_STEP = re.compile(r"^step (\d+)/(\d+)\s+(.*)$")


def interactive() -> bool:
    """True in a Jupyter kernel with a person at the frontend (not papermill, not a terminal)."""
    if os.environ.get(HEADLESS_ENV):
        return False
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return bool(shell) and type(shell).__name__ == "ZMQInteractiveShell"


class TrainingProgress:
    """Follows the trainer's `step N/M ...` lines: a bar with loss and rate when interactive,
    the lines themselves otherwise. `feed` shows the lines of PROGRESS_PREFIXES and no other."""

    def __init__(self, description: str):
        self.description = description
        self.bar: Any = None

    def line(self, text: str) -> None:
        match = _STEP.match(text)
        if not interactive():
            print(text, flush=True)
            return
        if not match:
            (self.bar.write if self.bar else print)(text)
            return
        step, total, rest = int(match[1]), int(match[2]), match[3]
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.description, unit="step")
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix_str(" ".join(rest.split()), refresh=True)

    def feed(self, text: str) -> None:
        """Show `text` if it is a progress line of the trainer's output."""
        if text.startswith(PROGRESS_PREFIXES):
            self.line(text.rstrip())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def waiting(name: str, seconds: float, url: str) -> None:
    """Shown while a service starts: a status line (interactive: redrawn in place)."""
    if interactive():
        print(f"\rwaiting for {name} at {url}: {seconds:4.0f} s", end="", flush=True)


def started(name: str, seconds: float, url: str) -> None:
    """Replaces the waiting line once a service answers its health check. Headless, the
    stage's result already says where each service is, and commands keep their output."""
    if interactive():
        print(f"\r{name} is up at {url} ({seconds:.1f} s)" + " " * 10, flush=True)
