"""What stages 05 and 06 share: the champion they serve, the server specs, asking them."""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

import requests

from tunekit.registry import CHAMPION
from tunekit.run import Run
from tunekit.services import ServiceSpec
from tunekit.tracking import tracking_uri

# The tutorial's style of question, with its CREATE TABLE context.
EXAMPLE = {
    "question": "What is the total number of points when the opponent is utah jazz?",
    "context": "CREATE TABLE table_name_12 (points INTEGER, opponent VARCHAR)",
}


def champion_uri(run: Run) -> str:
    return f"models:/{run.settings.registered_model_name}@{CHAMPION}"


def champion_version(run: Run) -> str:
    """The version the alias points at now (stage 04 recorded which)."""
    registry = run.state.section("registry")
    if not registry.get("version"):
        raise RuntimeError("no registered champion recorded for this run: run stage 04 first")
    return str(registry["version"])


def fastapi_spec(run: Run) -> ServiceSpec:
    """`python -m tunekit.serve` on the champion. The version is in the environment, so a
    server started on an earlier champion is restarted, not reused."""
    return ServiceSpec(
        name="fastapi",
        command=[
            sys.executable,
            "-m",
            "tunekit.serve",
            "--model-uri",
            champion_uri(run),
            "--port",
            "{port}",
        ],
        health_path="/readyz",
        env={
            "MLFLOW_TRACKING_URI": tracking_uri(run),
            "TUNEKIT_SERVED_VERSION": champion_version(run),
            "HF_HUB_OFFLINE": "1" if run.settings.model_id == "tiny-gemma2" else "0",
        },
    )


def ask(run: Run, question: str = EXAMPLE["question"], context: str = EXAMPLE["context"],
        server: str = "fastapi") -> dict[str, Any]:  # fmt: skip
    """Send one question to a running server of stage 05; its answer and the `curl` for it."""
    url = run.state.section("serving").get(server, {}).get("url")
    if not url:
        raise RuntimeError(f"no {server} server recorded for this run: run its stage first")
    body = {"question": question, "context": context}
    response = requests.post(f"{url}/predict", json=body, timeout=120)
    response.raise_for_status()
    curl = (
        f"curl -s -X POST {url}/predict -H 'Content-Type: application/json' "
        f"-d {shlex.quote(json.dumps(body))}"
    )
    return {**response.json(), "question": question, "curl": curl}
