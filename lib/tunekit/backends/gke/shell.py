"""The gke profile's commands (terraform, gcloud, kubectl, helm): run them, or only show them.

Every command is printed and appended to `<run>/gke/commands.sh`; the plan's shell
(`record_only`) executes nothing, so the run dir holds exactly what a real run would do.
Rendered manifests and Helm values are written next to it (`gke/manifests/`, `gke/helm/`).
Secret values are never printed or written: they reach the cluster through the Kubernetes API
(`kube`), as do the server-side applies and the fine-tune Job's logs and outcome; commands.sh
shows the kubectl equivalent of each.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tunekit.backends.gke.kube import FIELD_MANAGER, Cluster, Kube
from tunekit.run import Run


class _Plain(yaml.SafeDumper):
    """Writes an object used twice (a probe, a secret's name) out twice, not as a YAML alias
    (`&id001` / `*id001`): the files are for people to read and diff."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


REDACTED = "<set at apply time; never written>"
T = TypeVar("T")
PLANNED = "dry-run"  # what a recording shell answers where a live platform gives a value


class CommandError(RuntimeError):
    """A cloud command failed; the message has the command and the end of its output."""


class Shell:
    """Runs (or, `record_only`, only records) the commands of one run's gke stages; `kube` is
    the cluster's API (by default the kubeconfig's current context). Recording only, it answers
    what a live platform would: a command's output from `planned` (argv -> its stdout), a
    value read from the platform (`live`) and from the environment (`environ`) as PLANNED."""

    def __init__(
        self,
        run: Run,
        stage: str,
        record_only: bool = False,
        kube: Cluster | None = None,
        planned: Callable[[list[str]], str] | None = None,
    ):
        self.record_only = record_only
        self._planned = planned
        self.folder = run.dir / "gke"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.script = self.folder / "commands.sh"
        self._kube = kube
        if not self.script.is_file():
            self.script.write_text(
                "#!/usr/bin/env bash\n"
                f"# The gke profile's commands for run {run.id}, in the order they ran.\n"
                "set -euo pipefail\n"
            )
        mode = "dry run: printed, not executed" if record_only else "executed"
        self._append(f"\n# --- {stage} ({datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC, {mode})")

    def run(
        self,
        argv: list[str],
        *,
        stdin: str | None = None,
        shown: str = "",
        capture: bool = False,
        check: bool = True,
        attempts: int = 1,
    ) -> subprocess.CompletedProcess[str] | None:
        """Run `argv` (None when recording only). `shown` replaces the recorded line (a
        here-document with its stdin, or a `#` comment where stdin holds secret values);
        `check=False` returns a failure instead of raising; `attempts` > 1 retries a failure,
        15 s apart."""
        line = self._echo(shown or shlex.join(argv))
        if self.record_only:
            return None
        for _ in range(attempts - 1):
            done = self._execute(argv, line, stdin, capture, check=False)
            if done.returncode == 0:
                return done
            print(f"(exit code {done.returncode}; trying again in 15 s)", flush=True)
            time.sleep(15)
        return self._execute(argv, line, stdin, capture, check)

    def _execute(
        self, argv: list[str], line: str, stdin: str | None, capture: bool, check: bool
    ) -> subprocess.CompletedProcess[str]:
        try:
            if capture or stdin is not None:
                done = subprocess.run(argv, input=stdin, capture_output=True, text=True)
                shown_output = (done.stderr or "") + (done.stdout or "")
            else:  # long commands (terraform apply, helm --wait): their output live
                returncode, lines = self._tee(argv)
                done = subprocess.CompletedProcess(argv, returncode, "".join(lines), "")
                shown_output = done.stdout
        except FileNotFoundError:
            raise CommandError(f"`{argv[0]}` is not installed (needed for: {line})") from None
        if check and done.returncode != 0:
            tail = "\n".join(shown_output.splitlines()[-15:])
            raise CommandError(f"`{line}` failed with exit code {done.returncode}\n{tail}")
        return done

    def output(self, argv: list[str]) -> str:
        """Run `argv` and return its standard output (recording only: the planned output)."""
        done = self.run(argv, capture=True)
        if done is None:
            return self._planned(argv) if self._planned else ""
        return done.stdout

    def live(self, value: T) -> T | str:
        """`value`, read from the platform, as the state records it (recording only: PLANNED)."""
        return PLANNED if self.record_only else value

    def ask(self, call: Callable[[], T]) -> T | str:
        """What `call` reads from (or makes on) the live platform (recording only: PLANNED,
        and nothing is called)."""
        return PLANNED if self.record_only else call()

    def environ(self, name: str) -> str:
        """Environment variable `name` of this process (recording only: PLANNED where unset,
        so that the plan shows what a set variable leads to)."""
        return os.environ.get(name, "") or (PLANNED if self.record_only else "")

    @staticmethod
    def _tee(argv: list[str]) -> tuple[int, deque[str]]:
        """Run `argv`, printing its output as it comes; its exit code and last lines."""
        last: deque[str] = deque(maxlen=50)
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, bufsize=1) as proc:  # fmt: skip
            for line in proc.stdout or []:
                print(line.rstrip(), flush=True)
                last.append(line)
            return proc.wait(), last

    @property
    def kube(self) -> Cluster:
        """The cluster's API."""
        if self._kube is None:
            self._kube = Kube()
        return self._kube

    def note(self, line: str) -> None:
        """Record and show a comment: what was done through the API, as kubectl would do it."""
        self._echo(f"# {line}")

    def write(self, relative: str, content: list[dict[str, Any]] | dict[str, Any]) -> Path:
        """Write manifests (a list: one YAML document each) or values (a dict) under gke/."""
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        docs = content if isinstance(content, list) else [content]
        path.write_text(yaml.dump_all(docs, Dumper=_Plain, sort_keys=False))
        return path

    def apply(self, relative: str, objects: list[dict[str, Any]]) -> Path:
        """Write `objects`, then server-side apply each through the API (recorded as the
        equivalent `kubectl apply --server-side`)."""
        path = self.write(relative, objects)
        self._echo(shlex.join(["kubectl", "apply", "--server-side",
                               f"--field-manager={FIELD_MANAGER}", "-f", str(path)]))  # fmt: skip
        for obj in objects:
            self.kube.apply(obj)
        return path

    def apply_kustomization(self, kustomization: str) -> None:
        """`kubectl apply --server-side -k` of an add-on's remote kustomization, retried (its
        webhooks answer a little after their Deployments are Available)."""
        self.run(["kubectl", "apply", "--server-side", f"--field-manager={FIELD_MANAGER}",
                  "-k", kustomization], attempts=5)  # fmt: skip

    def wait_available(self, namespace: str, deployment: str = "", timeout: str = "10m") -> None:
        """Wait for `deployment` (all of the namespace's when empty) to be Available."""
        which = [f"deployment/{deployment}"] if deployment else ["deployment", "--all"]
        self.run(["kubectl", "wait", *which, f"-n={namespace}", "--for=condition=Available",
                  f"--timeout={timeout}"])  # fmt: skip

    def apply_secret(self, relative: str, secret: dict[str, Any]) -> None:
        """Write the Secret with its values redacted; server-side apply the real one through the
        API (no `last-applied-configuration` annotation carries the values)."""
        redacted = {**secret, "stringData": dict.fromkeys(secret["stringData"], REDACTED)}
        path = self.write(relative, [redacted])
        # a comment: replaying the script must not apply the redacted values
        self.note(
            f"Secret {secret['metadata']['name']} applied server-side with its values "
            f"(redacted copy: {path})"
        )
        self.kube.apply(secret)

    def _echo(self, line: str) -> str:
        """Record `line` in the script and show it (a `#` line as it is, a command as `$ ...`)."""
        self._append(line)
        print(line if line.startswith("#") else f"$ {line}", flush=True)
        return line

    def _append(self, line: str) -> None:
        with self.script.open("a") as f:
            f.write(line + "\n")
