"""A fine-tune's MLflow records through an MLflow outage: waited out, not lost.

Every metric point is also appended to the job's buffer (`MetricBuffer`, `metrics.jsonl`) as
it is logged, and the points that MLflow's history lacks are logged again (`replay_metrics`)
before the run ends; each final call waits up to `mlflow_outage_s` for MLflow to answer again
(`through_outage`), and past that the trainer stops with a message saying how to resume into
the same run (`tunekit.mlflow_record`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import mlflow
import requests
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

# MLflow's HTTP client retries a request that failed (refused, timed out, 408/429/5xx) with
# urllib3's Retry: no sleep before the first retry, then backoff_factor * 2**(n-1) s before
# retry n, at most 120 s, plus up to MLFLOW_HTTP_REQUEST_BACKOFF_JITTER (1.0) s
# (urllib3/util/retry.py `get_backoff_time`; mlflow/utils/request_utils.py). MLflow's defaults
# (mlflow/environment_variables.py): 7 retries, factor 2, timeout 120 s: 0+4+8+16+32+64+120 =
# 244 s, about 4 minutes, before a request fails. Its async queue, which carries the trainer's
# metrics (mlflow/utils/async_logging/async_logging_queue.py), has no retry of its own: a batch
# whose request failed is dropped, logging "Failed to log run data". The kit decides instead:
# 5 retries, factor 2: 0+4+8+16+32 = 60 s (+ up to 5 s of jitter) per request, and a server
# that accepts and never answers is given up after 60 s a try. The environment may set others.
HTTP_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}
# MLflowCallback's metric names (transformers/integrations/integration_utils.py, `on_log`)
_UNSAFE_KEY_CHARS = re.compile(r"[^0-9A-Za-z_\-\.\ :/]")
_MAX_METRICS_PER_BATCH = 1000  # mlflow/utils/validation.py MAX_METRICS_PER_BATCH
_T = TypeVar("_T")
# What MLflow's REST client raises from when a request got no answer
_NO_ANSWER = (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError)


class MlflowUnavailable(RuntimeError):
    """MLflow did not answer for the whole `mlflow_outage_s`."""


class DroppedBatches(logging.Handler):
    """Counts the batches MLflow's async queue gave up on: it logs each at ERROR on its module's
    logger and drops it (mlflow/utils/async_logging/async_logging_queue.py `_log_run_data`)."""

    LOGGER = "mlflow.utils.async_logging.async_logging_queue"

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


class MetricBuffer:
    """The run's metric points as JSON lines (key, value, step, timestamp), appended as they
    are logged; a point MLflow's async queue dropped is still here for `replay_metrics`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, metrics: Mapping[str, float], step: int) -> None:
        """Append `metrics` at `step`, named as MLflowCallback names them."""
        timestamp = int(time.time() * 1000)
        lines = "".join(
            json.dumps({"key": metric_key(k), "value": v, "step": step, "timestamp": timestamp})
            + "\n"
            for k, v in metrics.items()
        )
        with self.path.open("a") as f:  # one write per log, closed: it survives a killed trainer
            f.write(lines)

    def points(self) -> dict[tuple[str, int], Metric]:
        """The last point of each (key, step): a step trained again after a resume is the
        newer one. A line torn by a kill is skipped."""
        found: dict[tuple[str, int], Metric] = {}
        if not self.path.is_file():
            return found
        for line in self.path.read_text().splitlines():
            try:
                p = json.loads(line)
                point = Metric(p["key"], float(p["value"]), int(p["timestamp"]), int(p["step"]))
            except (ValueError, KeyError, TypeError):
                continue
            found[(point.key, point.step)] = point
        return found

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def metric_key(name: str) -> str:
    """A log's name as MLflowCallback logs it (characters MLflow refuses become `_`)."""
    return _UNSAFE_KEY_CHARS.sub("_", name)


def replay_metrics(buffer: MetricBuffer, run_id: str) -> int:
    """Log the buffered points whose (key, step) the run's history lacks; how many. Running it
    again logs nothing more."""
    client = MlflowClient()
    by_key: dict[str, list[Metric]] = {}
    for point in buffer.points().values():
        by_key.setdefault(point.key, []).append(point)
    missing = []
    for key, points in sorted(by_key.items()):
        logged = {m.step for m in client.get_metric_history(run_id, key)}
        missing += [p for p in points if p.step not in logged]
    for start in range(0, len(missing), _MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=missing[start : start + _MAX_METRICS_PER_BATCH])
    return len(missing)


def bound_http_retries() -> None:
    """This process's MLflow HTTP retries: the kit's budget (HTTP_RETRIES) unless set."""
    for name, value in HTTP_RETRIES.items():
        os.environ.setdefault(name, value)


def through_outage(what: str, call: Callable[[], _T], outage_s: float) -> _T:
    """`call()`, again while MLflow does not answer, for up to `outage_s` s from the first
    failure; MlflowUnavailable past that. Any other error is raised at once."""
    uri = mlflow.get_tracking_uri()
    since: float | None = None
    while True:
        try:
            return call()
        except Exception as e:
            if not _is_outage(e, uri):
                raise
            since = since or time.monotonic()
            left = since + outage_s - time.monotonic()
            say(f"MLflow at {uri} did not answer ({what}); waiting up to {max(left, 0):.0f} s")
            time.sleep(min(2.0, max(left, 0)))  # a server that answers but fails: not in a loop
            left = since + outage_s - time.monotonic()
            if left <= 0 or not _wait_until_answers(uri, left):
                raise MlflowUnavailable(
                    f"MLflow at {uri} did not answer for {outage_s:.0f} s "
                    f"(setting mlflow_outage_s) while {what}"
                ) from e


def mlflow_answers(uri: str, timeout: float = 5.0) -> bool:
    """True if the tracking server's /health answers 200 (a non-HTTP store always does)."""
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        return requests.get(f"{uri.rstrip('/')}/health", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def _wait_until_answers(uri: str, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if mlflow_answers(uri, timeout=min(5.0, max(end - time.monotonic(), 0.5))):
            return True
        time.sleep(min(2.0, max(end - time.monotonic(), 0)))
    return False


def _is_outage(error: BaseException, uri: str) -> bool:
    """The request never got an answer (refused, timed out, or 5xx/429 after every retry: the
    exceptions MLflow's REST client raises from, mlflow/utils/rest_utils.py `http_request`), or
    MLflow does not answer its health check now."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, _NO_ANSWER):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return not mlflow_answers(uri)


def say(message: str) -> None:
    print(f"tunekit: {message}", flush=True)
