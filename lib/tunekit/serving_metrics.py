"""What the kit's model servers export at `/metrics` (Prometheus text format), and reading it back.

One set of names for every server the kit runs, so the rollout rule (`tunekit.promotion`), an
autoscaler and a dashboard read the same series:

- `tunekit_requests_total{adapter, code}`: answered requests by HTTP status;
- `tunekit_request_latency_seconds{adapter}`: a histogram of their latency, arrival to answer;
- `vllm:num_requests_waiting{model_name}`: requests queued for the model. vLLM's own name for its
  queue (vllm/v1/metrics/loggers.py, `gauge_scheduler_waiting`), so one autoscaling query reads
  the FastAPI server and vLLM alike.

A request fails, for the rollout, when the server could not answer a valid one: a 5xx, or a 429
(its queue was full). A 4xx the client caused (a bad context, a body too large) or a client that
went away (499) is not the server's fault. A 429 of the FastAPI server's queue, which both
adapters share, counts as `unrouted`: the load is the server's, not the adapter's the split chose.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "tunekit_requests"  # a counter: exposed as tunekit_requests_total
LATENCY = "tunekit_request_latency_seconds"
WAITING = "vllm:num_requests_waiting"
UNROUTED = "unrouted"  # the label of a request refused before an adapter was chosen or by the queue
# the alias a server of one adapter serves, its adapter label (MLServer's runtime; a KServe
# canary serves the challenger), "champion" when unset
SERVED_ALIAS = "TUNEKIT_SERVED_ALIAS"
# 5 ms to ~6 min, each bound 25% above the last: a p95 read from the buckets is within a
# bucket's width of the truth, finer than the rollout rule's 1.1x latency margin needs on average
LATENCY_BUCKETS = tuple(round(0.005 * 1.25**i, 6) for i in range(51))


def failed(code: int) -> bool:
    """The server could not answer a valid request (see the module's docstring)."""
    return code >= 500 or code == 429


class ServerMetrics:
    """A server's metrics in a registry of its own (two apps in one process stay apart)."""

    def __init__(self, waiting: Callable[[], int], model_name: str):
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            REQUESTS, "Answered requests by adapter and HTTP status.", ["adapter", "code"],
            registry=self.registry,
        )  # fmt: skip
        self._latency = Histogram(
            LATENCY, "Request latency, arrival to answer, by adapter.", ["adapter"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        Gauge(
            WAITING, "Requests waiting for the model.", ["model_name"], registry=self.registry
        ).labels(model_name).set_function(waiting)

    def observe(self, adapter: str, code: int, seconds: float) -> None:
        self._requests.labels(adapter, str(code)).inc()
        self._latency.labels(adapter).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Measured:
    """ASGI middleware: each request to a path of `paths` is counted and timed, by the adapter
    that answered it (`scope["state"]["adapter"]`, set by the app once it has chosen one);
    a request refused before (a body that does not validate, too large) is `unrouted`."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, app: Any, metrics: ServerMetrics, paths: tuple[str, ...]):
        self.app, self.metrics, self.paths = app, metrics, paths

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        started, code = time.monotonic(), 500  # a response never started: the server failed

        async def watched(message: dict) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            adapter = scope.get("state", {}).get("adapter", UNROUTED)
            self.metrics.observe(adapter, code, time.monotonic() - started)


@dataclass
class AdapterNumbers:
    """One adapter's counts, as a scrape reads them (cumulative since the server started)."""

    requests: int = 0
    failures: int = 0
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound -> count at or below

    def since(self, earlier: AdapterNumbers) -> AdapterNumbers:
        """The numbers of the requests after `earlier` (a scrape of the same server before);
        a server that restarted in between counts from zero again, as Prometheus' rate() does."""
        if self.requests < earlier.requests:
            return self
        return AdapterNumbers(
            self.requests - earlier.requests,
            self.failures - earlier.failures,
            {b: n - earlier.buckets.get(b, 0.0) for b, n in self.buckets.items()},
        )

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float:
        """The q-quantile of latency, interpolated in its bucket as PromQL's
        histogram_quantile does (promql/quantile.go: linear within the bucket, the lowest
        bucket from 0, a quantile in the +Inf bucket is the highest finite bound)."""
        bounds = sorted(self.buckets)
        total = self.buckets.get(float("inf"), 0.0)
        if not bounds or total <= 0:
            return float("nan")
        rank, lower, below = q * total, 0.0, 0.0
        for bound in bounds:
            count = self.buckets[bound]
            if count >= rank:
                if bound == float("inf"):
                    return lower
                return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
            lower, below = bound, count
        return lower


def read(text: str) -> dict[str, AdapterNumbers]:
    """Per adapter, the numbers of a `/metrics` scrape in the kit's names."""
    numbers: dict[str, AdapterNumbers] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            adapter = sample.labels.get("adapter")
            if adapter is None:
                continue
            got = numbers.setdefault(adapter, AdapterNumbers())
            if sample.name == f"{REQUESTS}_total":
                got.requests += int(sample.value)
                got.failures += int(sample.value) if failed(int(sample.labels["code"])) else 0
            elif sample.name == f"{LATENCY}_bucket":
                got.buckets[float(sample.labels["le"])] = sample.value
    return numbers
