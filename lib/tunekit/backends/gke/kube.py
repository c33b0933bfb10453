"""The cluster through the Kubernetes API (the `kubernetes` client), for what needs care:
server-side apply, Secrets (NotFound is the only "absent"), a Job followed to Complete *or*
Failed with its pods' logs streamed, and a pod that finds no node reported as such.

The gke profile's `Shell` writes the kubectl equivalent of each call into commands.sh.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

FIELD_MANAGER = "tunekit"
JOB_LABEL = "batch.kubernetes.io/job-name"  # set on a Job's pods by the Job controller (1.27+)
COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"  # an Indexed Job's pods (1.28+)
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"  # GKE labels GPU nodes with it
TRAINER_API = "trainer.kubeflow.org/v1alpha1"  # Kubeflow Trainer's TrainJob
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")  # what an add-on installs first


class KubeError(RuntimeError):
    """The Kubernetes API refused a call; the message names the object and the reason."""


class JobFailed(KubeError):
    """A Job failed or its pod found no node; the message holds its reason, logs and events."""


@dataclass
class JobOutcome:
    """How a Job ended: `complete` or `failed`, the condition's reason and message."""

    status: str
    reason: str = ""
    message: str = ""


def _api_error(e: Exception, what: str) -> KubeError:
    status = getattr(e, "status", "")
    reason = getattr(e, "reason", "") or type(e).__name__
    return KubeError(f"{what}: the Kubernetes API answered {status} {reason}".strip())


class Cluster(Protocol):
    """What the gke stages ask of a cluster's API: `Kube` answers from a live cluster, the
    plan's `EmptyCluster` as a new cluster would (nothing there yet)."""

    def apply(self, obj: dict[str, Any]) -> None: ...
    def read_secret(self, namespace: str, name: str) -> dict[str, str] | None: ...
    def exists(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> bool: ...
    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None: ...
    def volume_claims(self, namespace: str) -> dict[str, str]: ...
    def jobs(self, namespace: str, selector: str) -> list[Any]: ...
    def gpus(self, accelerator: str) -> int: ...
    def follow_job(
        self,
        namespace: str,
        name: str,
        container: str,
        on_line: Callable[[str], None] = print,
        on_status: Callable[[str], None] = lambda status: None,
        schedule_timeout_s: float = 1800,
        poll_s: float = 10,
        pod_selector: str = "",
    ) -> JobOutcome: ...
    def trainjob_job(
        self, namespace: str, name: str, timeout_s: float = 1800, poll_s: float = 10
    ) -> str: ...
    def log_tail(self, namespace: str, pod: str, container: str, lines: int = 30) -> str: ...
    def events(self, namespace: str, names: list[str]) -> str: ...


class Kube:
    """One cluster: the current context of the kubeconfig (stage 01's get-credentials)."""

    def __init__(self, api_client: Any = None):
        from kubernetes import client, config

        if api_client is None:
            # $KUBECONFIG as it is now (the client reads it once, when it is imported)
            configuration = client.Configuration()
            config.load_kube_config(
                config_file=os.environ.get("KUBECONFIG") or "~/.kube/config",
                client_configuration=configuration,
            )
            api_client = client.ApiClient(configuration)
        self.api = api_client
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self._dynamic: Any = None

    @property
    def dynamic(self) -> Any:
        from kubernetes.dynamic import DynamicClient

        if self._dynamic is None:
            self._dynamic = DynamicClient(self.api)
        return self._dynamic

    def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply as field manager `tunekit` (`kubectl apply --server-side`): no
        `last-applied-configuration` annotation, so a Secret's values stay out of metadata."""
        from kubernetes.client.exceptions import ApiException

        meta = obj["metadata"]
        what = f"{obj['kind']}/{meta['name']}"
        try:
            resource = self.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            resource.server_side_apply(
                body=obj,
                name=meta["name"],
                namespace=meta.get("namespace"),
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
        except ApiException as e:
            raise _api_error(e, f"applying {what}") from None

    def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """Secret `name`'s values, or None when it does not exist (404). Any other answer
        (forbidden, unreachable, a server error) is an error, never "absent"."""
        from kubernetes.client.exceptions import ApiException

        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise _api_error(e, f"reading Secret {namespace}/{name}") from None
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def exists(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """True if the object exists; False only on 404."""
        return self.get(api_version, kind, name, namespace) is not None

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The object as a dict; None on 404."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

        try:
            resource = self.dynamic.resources.get(api_version=api_version, kind=kind)
            return resource.get(name=name, namespace=namespace).to_dict()
        except (NotFoundError, ResourceNotFoundError):
            return None
        except ApiException as e:
            if e.status == 404:
                return None
            raise _api_error(e, f"reading {kind}/{name}") from None

    def volume_claims(self, namespace: str) -> dict[str, str]:
        """The namespace's PersistentVolumeClaims: claim name -> bound volume ("" if none)."""
        from kubernetes.client.exceptions import ApiException

        try:
            found = self.core.list_namespaced_persistent_volume_claim(namespace).items
        except ApiException as e:
            if e.status == 404:
                return {}
            raise _api_error(e, f"listing PersistentVolumeClaims of {namespace}") from None
        return {c.metadata.name: c.spec.volume_name or "" for c in found}

    def jobs(self, namespace: str, selector: str) -> list[Any]:
        """The Jobs matching a label selector, oldest first."""
        found = self.batch.list_namespaced_job(namespace, label_selector=selector).items
        return sorted(found, key=lambda j: j.metadata.creation_timestamp or 0)

    def gpus(self, accelerator: str) -> int:
        """The GPUs the nodes of GKE accelerator `accelerator` report allocatable."""
        nodes = self.core.list_node(label_selector=f"{GKE_ACCELERATOR_LABEL}={accelerator}").items
        return sum(int((n.status.allocatable or {}).get("nvidia.com/gpu", 0)) for n in nodes)

    def follow_job(
        self,
        namespace: str,
        name: str,
        container: str,
        on_line: Callable[[str], None] = print,
        on_status: Callable[[str], None] = lambda status: None,
        schedule_timeout_s: float = 1800,
        poll_s: float = 10,
        pod_selector: str = "",
    ) -> JobOutcome:
        """Stream the logs of `container` in each pod of Job `name` (those of `pod_selector`
        too, e.g. an Indexed Job's first) as it runs, until the Job is
        Complete or Failed. `on_status` hears "pending" (no node yet, or starting) and
        "running". Raises JobFailed when it fails (its reason, the last log lines, the events)
        or when its pod has found no node for `schedule_timeout_s` (e.g. no GPU quota, too
        large a request)."""
        from kubernetes import watch

        streamed: set[str] = set()
        pending_since: float | None = None
        said = ""
        while True:
            job = self.batch.read_namespaced_job(name, namespace)
            outcome = job_outcome(job)
            if outcome:
                break
            pod = self._newest_pod(namespace, name, pod_selector)
            phase = (pod and pod.status and pod.status.phase) or "Pending"
            if pod and phase != "Pending" and pod.metadata.name not in streamed:
                streamed.add(pod.metadata.name)
                pending_since, said = None, ""
                on_status("running")
                self._stream_logs(namespace, pod.metadata.name, container, on_line)
                continue
            if phase == "Pending":
                if pending_since is None:
                    pending_since = time.monotonic()
                    on_status("pending")
                reason = unschedulable(pod) if pod else ""
                if reason and time.monotonic() - pending_since > schedule_timeout_s:
                    raise JobFailed(
                        f"Job {name}: its pod found no node for {schedule_timeout_s:.0f} s "
                        f"(setting schedule_timeout_s): {reason}\n"
                        f"{self.events(namespace, [name, pod.metadata.name])}"
                    )
                status = f"Job {name}: waiting for a node ({reason})" if reason else ""
                if status and status != said:
                    on_line(status)
                    said = status
            # wait until the Job changes after what was read (a condition, a pod started or
            # gone), or poll_s passes, before looking again
            for _ in watch.Watch().stream(
                self.batch.list_namespaced_job,
                namespace,
                field_selector=f"metadata.name={name}",
                resource_version=job.metadata.resource_version,
                timeout_seconds=int(poll_s),
            ):
                break
        if outcome.status == "failed":
            pod = self._newest_pod(namespace, name, pod_selector)
            logs = self.log_tail(namespace, pod.metadata.name, container) if pod else ""
            names = [name, *([pod.metadata.name] if pod else [])]
            raise JobFailed(
                f"Job {name} failed ({outcome.reason}: {outcome.message}).\n"
                f"Last log lines of its pod:\n{logs}\n{self.events(namespace, names)}"
            )
        return outcome

    def _newest_pod(self, namespace: str, job: str, selector: str = "") -> Any:
        labels = ",".join(filter(None, [f"{JOB_LABEL}={job}", selector]))
        pods = self.core.list_namespaced_pod(namespace, label_selector=labels).items
        return max(pods, key=lambda p: p.metadata.creation_timestamp or 0, default=None)

    def trainjob_job(
        self, namespace: str, name: str, timeout_s: float = 1800, poll_s: float = 10
    ) -> str:
        """The name of the Job that TrainJob `name`'s JobSet runs its nodes in (JobSet names it
        `<jobset>-<replicated job>-<index>`: `<name>-node-0`), once it exists. Raises JobFailed
        when the TrainJob fails first, or when no Job comes within `timeout_s`: the Trainer
        then reports why only as events (pkg/controller/trainjob_controller.go,
        `TrainJobResourcesCreationFailed`), which the message holds."""
        job = f"{name}-node-0"
        deadline = time.monotonic() + timeout_s
        while True:
            if self.exists("batch/v1", "Job", job, namespace):
                return job
            found = self.get(TRAINER_API, "TrainJob", name, namespace) or {}
            for condition in found.get("status", {}).get("conditions", []):
                if condition.get("type") == "Failed" and condition.get("status") == "True":
                    raise JobFailed(
                        f"TrainJob {name} failed ({condition.get('reason')}: "
                        f"{condition.get('message')})\n{self.events(namespace, [name])}"
                    )
            if time.monotonic() > deadline:
                raise JobFailed(
                    f"TrainJob {name}: no Job {job} after {timeout_s:.0f} s\n"
                    f"{self.events(namespace, [name])}"
                )
            time.sleep(poll_s)

    def _stream_logs(
        self, namespace: str, pod: str, container: str, on_line: Callable[[str], None]
    ) -> None:
        response = self.core.read_namespaced_pod_log(
            pod, namespace, container=container, follow=True, _preload_content=False
        )
        try:
            for line in _lines(response):
                on_line(line)
        finally:
            response.release_conn()

    def log_tail(self, namespace: str, pod: str, container: str, lines: int = 30) -> str:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.core.read_namespaced_pod_log(
                pod, namespace, container=container, tail_lines=lines
            )
        except ApiException as e:
            return f"(no logs: {e.status} {e.reason})"

    def events(self, namespace: str, names: list[str]) -> str:
        """The events about `names` (a Job, its pod), oldest first, one line each."""
        found = [
            e
            for name in names
            for e in self.core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={name}"
            ).items
        ]
        found.sort(key=lambda e: str(e.last_timestamp or e.event_time or ""))
        lines = [
            f"  {e.type} {e.reason} {e.involved_object.kind}/{e.involved_object.name}: "
            f"{(e.message or '').strip()}"
            for e in found[-15:]
        ]
        return "Events:\n" + "\n".join(lines) if lines else "Events: none"


def _lines(response: Any) -> Any:
    """The lines of a streamed HTTP response (a pod's log with follow=true)."""
    buffer = b""
    for chunk in response.stream(1024, decode_content=True):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            yield line.decode(errors="replace")
    if buffer:
        yield buffer.decode(errors="replace")


def job_outcome(job: Any) -> JobOutcome | None:
    """Complete or Failed from a Job's conditions (status True); None while it runs."""
    for condition in (job.status and job.status.conditions) or []:
        if condition.status == "True" and condition.type in ("Complete", "Failed"):
            return JobOutcome(
                "complete" if condition.type == "Complete" else "failed",
                condition.reason or "",
                condition.message or "",
            )
    return None


def unschedulable(pod: Any) -> str:
    """Why the scheduler has not placed `pod` (its PodScheduled condition), or ''."""
    for condition in (pod.status and pod.status.conditions) or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"{condition.reason}: {condition.message}"
    return ""
