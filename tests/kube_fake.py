"""A FAKE Kubernetes API server: there is no cluster on this machine (no GKE API, no Docker for
kind), so the gke profile's calls through the real `kubernetes` client are answered by this
small HTTP server instead. It speaks the parts of the API the kit uses: discovery, server-side
apply (PATCH application/apply-patch+yaml), GET of single objects, lists with label and field
selectors, a Job watch, pod logs (follow and tail), and events. It records every request, and a
test can make any path answer with an error status.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

# (group, version, kind) -> (plural, namespaced): what the kit applies and reads
KINDS = {
    ("", "v1", "Namespace"): ("namespaces", False),
    ("", "v1", "Node"): ("nodes", False),
    ("", "v1", "ServiceAccount"): ("serviceaccounts", True),
    ("", "v1", "Secret"): ("secrets", True),
    ("", "v1", "ConfigMap"): ("configmaps", True),
    ("", "v1", "Service"): ("services", True),
    ("", "v1", "Pod"): ("pods", True),
    ("", "v1", "Event"): ("events", True),
    ("", "v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("", "v1", "PersistentVolume"): ("persistentvolumes", False),
    ("apps", "v1", "StatefulSet"): ("statefulsets", True),
    ("apps", "v1", "Deployment"): ("deployments", True),
    ("batch", "v1", "Job"): ("jobs", True),
    ("networking.k8s.io", "v1", "NetworkPolicy"): ("networkpolicies", True),
    ("serving.kserve.io", "v1beta1", "InferenceService"): ("inferenceservices", True),
    ("serving.kserve.io", "v1alpha1", "ServingRuntime"): ("servingruntimes", True),
    ("serving.kserve.io", "v1alpha1", "ClusterServingRuntime"): ("clusterservingruntimes", False),
    ("trainer.kubeflow.org", "v1alpha1", "TrainJob"): ("trainjobs", True),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"):
        ("customresourcedefinitions", False),
}  # fmt: skip
_BY_PLURAL = {(g, v, plural): kind for (g, v, kind), (plural, _) in KINDS.items()}


class FakeKubeAPI:
    """Objects by (plural, namespace, name); `requests` as (method, path, query, headers, body);
    `errors[path] = status` makes GETs of that path fail; `logs[pod]` is a pod's log text;
    `on_apply(obj)` runs after an object is applied (to play a controller: a Job's pod);
    `after_logs(pod)` runs when a followed log stream ends (to let a Job finish)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]], dict[str, str], Any]] = []
        self.errors: dict[str, int] = {}
        self.logs: dict[str, str] = {}
        self.after_logs: Any = lambda pod: None
        self.on_apply: Any = lambda obj: None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeKubeAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def kubeconfig(self, folder: Path) -> Path:
        """A kubeconfig whose current context is this server (what get-credentials writes)."""
        path = folder / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }))  # fmt: skip
        return path

    def put(self, obj: dict[str, Any]) -> None:
        """Store an object as if the cluster had it (or a controller had updated it)."""
        obj = _stored(obj)
        group, _, version = obj["apiVersion"].rpartition("/")
        plural, _ = KINDS[(group, version, obj["kind"])]
        meta = obj.setdefault("metadata", {})
        meta.setdefault("creationTimestamp", _now())
        meta.setdefault("resourceVersion", "1")
        self.objects[(plural, meta.get("namespace", ""), meta["name"])] = obj

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((plural, namespace, name))

    def applied(self) -> list[tuple[str, dict[str, list[str]], dict[str, str], Any]]:
        """The server-side applies received: (path, query, headers, body)."""
        return [(p, q, h, b) for m, p, q, h, b in self.requests if m == "PATCH"]

    # --- the HTTP side

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake._serve(self, "GET")

            def do_PATCH(self) -> None:
                fake._serve(self, "PATCH")

        return Handler

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        query = parse_qs(url.query)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body = yaml.safe_load(raw) if raw else None  # JSON is YAML
        self.requests.append((method, url.path, query, dict(h.headers), body))
        if method == "GET" and url.path in self.errors:
            return _send(h, self.errors[url.path], _status(self.errors[url.path], url.path))
        parts = [p for p in url.path.split("/") if p]
        if url.path == "/version":
            return _send(h, 200, {"major": "1", "minor": "34", "gitVersion": "v1.34.1-fake"})
        if url.path == "/apis":
            return _send(h, 200, _groups())
        if parts in (["api"],):
            return _send(h, 200, {"kind": "APIVersions", "versions": ["v1"]})
        if (parts[:1] == ["api"] and len(parts) == 2) or (
            parts[:1] == ["apis"] and len(parts) == 3
        ):
            group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
            return _send(h, 200, _resources(group, version))
        group, version, rest = (
            ("", parts[1], parts[2:]) if parts[0] == "api" else (parts[1], parts[2], parts[3:])
        )
        namespace = ""
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else ""), rest[2:]
        kind = _BY_PLURAL.get((group, version, plural))
        if kind is None:
            return _send(h, 404, _status(404, url.path))
        if method == "PATCH":
            if h.headers.get("Content-Type") != "application/apply-patch+yaml":
                return _send(h, 415, _status(415, "only server-side apply is faked"))
            body = _stored(body)
            body.setdefault("metadata", {}).setdefault("creationTimestamp", _now())
            body["metadata"]["resourceVersion"] = str(len(self.requests))
            self.objects[(plural, namespace, name)] = body
            self.on_apply(body)
            return _send(h, 200, body)
        if sub == ["log"]:
            return self._log(h, name, query)
        if name:
            found = self.get(plural, namespace, name)
            return _send(h, 200, found) if found else _send(h, 404, _status(404, url.path))
        items = [o for (p, ns, _), o in self.objects.items()
                 if p == plural and (ns == namespace or not namespace)
                 and _selected(o, query)]  # fmt: skip
        if query.get("watch") == ["true"] or query.get("watch") == ["True"]:
            if "resourceVersion" in query:  # changes after a version: none here; wait a little
                time.sleep(0.05)
                return _send_text(h, "", "application/json")
            lines = [json.dumps({"type": "ADDED", "object": o}) for o in items]
            return _send_text(h, "\n".join(lines) + "\n", "application/json")
        return _send(h, 200, {"kind": f"{kind}List", "apiVersion": f"{group}/{version}".strip("/"),
                              "metadata": {"resourceVersion": "1"}, "items": items})  # fmt: skip

    def _log(self, h: BaseHTTPRequestHandler, pod: str, query: dict[str, list[str]]) -> None:
        text = self.logs.get(pod, "")
        if "tailLines" in query:
            text = "\n".join(text.splitlines()[-int(query["tailLines"][0]) :])
        _send_text(h, text, "text/plain")
        if query.get("follow") == ["true"] or query.get("follow") == ["True"]:
            self.after_logs(pod)


def _stored(obj: dict[str, Any]) -> dict[str, Any]:
    """As the API server stores it: a Secret's stringData becomes base64 `data`."""
    if obj.get("kind") != "Secret" or "stringData" not in obj:
        return obj
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in obj["stringData"].items()}
    rest = {k: v for k, v in obj.items() if k != "stringData"}
    return {**rest, "data": {**obj.get("data", {}), **encoded}}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _selected(obj: dict[str, Any], query: dict[str, list[str]]) -> bool:
    for selector in query.get("labelSelector", []):
        labels = obj.get("metadata", {}).get("labels", {})
        for term in selector.split(","):
            key, _, value = term.partition("=")
            if labels.get(key) != value:
                return False
    for selector in query.get("fieldSelector", []):
        for term in selector.split(","):
            key, _, value = term.partition("=")
            target: Any = obj
            for part in key.split("."):
                target = (target or {}).get(part)
            if target != value:
                return False
    return True


def _groups() -> dict[str, Any]:
    versions: dict[str, list[str]] = {}
    for group, version, _ in KINDS:
        if group:
            versions.setdefault(group, []).append(version)
    groups = []
    for name, vs in versions.items():
        entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in dict.fromkeys(vs)]
        groups.append({"name": name, "versions": entries, "preferredVersion": entries[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _resources(group: str, version: str) -> dict[str, Any]:
    resources = [
        {"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
        for (g, v, kind), (plural, namespaced) in KINDS.items()
        if g == group and v == version
    ]  # fmt: skip
    if group == "" and version == "v1":
        resources.append({"name": "pods/log", "namespaced": True, "kind": "Pod", "verbs": ["get"]})
    return {"kind": "APIResourceList", "groupVersion": f"{group}/{version}".strip("/"),
            "resources": resources}  # fmt: skip


def _status(code: int, what: str) -> dict[str, Any]:
    reasons = {403: "Forbidden", 404: "NotFound", 415: "UnsupportedMediaType",
               500: "InternalError", 503: "ServiceUnavailable"}  # fmt: skip
    reason = reasons.get(code, "Unknown")
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
            "reason": reason, "message": f"{what}: {reason}"}  # fmt: skip


def _send(h: BaseHTTPRequestHandler, code: int, payload: Any) -> None:
    data = json.dumps(payload).encode()
    h.send_response(code)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


def _send_text(h: BaseHTTPRequestHandler, text: str, content_type: str) -> None:
    data = text.encode()
    h.send_response(200)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)
