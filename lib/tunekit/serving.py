"""What stages 05 and 06 share: the champion they serve, the server specs, asking them."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import requests

from tunekit.models import TINY
from tunekit.prompts import build_prompt
from tunekit.registry import CHAMPION
from tunekit.run import Run
from tunekit.services import ServiceSpec, free_port
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
    """`python -m tunekit.serve` on the champion."""
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
        env=_server_env(run),
    )


def _server_env(run: Run) -> dict[str, str]:
    """What both servers need to load the champion. The version is in it, so a server started
    on an earlier champion is restarted, not reused."""
    return {
        "MLFLOW_TRACKING_URI": tracking_uri(run),
        "TUNEKIT_SERVED_VERSION": champion_version(run),
        "HF_HUB_OFFLINE": "1" if run.settings.model_id == TINY else "0",
    }


def mlserver_executable() -> str:
    """`mlserver`: $TUNEKIT_MLSERVER, else the project's .venv-mlserver, else the PATH."""
    if found := os.environ.get("TUNEKIT_MLSERVER"):
        return found
    project = Path(__file__).resolve().parents[2] / ".venv-mlserver" / "bin" / "mlserver"
    if project.is_file():
        return str(project)
    if found := shutil.which("mlserver"):
        return found
    raise RuntimeError(
        "MLServer is not installed: `make install` creates .venv-mlserver with it "
        "(or set TUNEKIT_MLSERVER to an `mlserver` executable)"
    )


def mlserver_spec(run: Run) -> ServiceSpec:
    """`mlserver start` on a model-settings file for the champion, written into the run dir."""
    name = run.settings.registered_model_name
    folder = run.dir / "mlserver"
    (folder / name).mkdir(parents=True, exist_ok=True)
    settings_file = folder / "settings.json"
    # gRPC and metrics ports are chosen once per run and kept, so a re-run can reuse the server
    ports = json.loads(settings_file.read_text()) if settings_file.is_file() else {}
    settings_file.write_text(json.dumps({
        "host": "127.0.0.1",
        "grpc_port": ports.get("grpc_port") or free_port(),
        "metrics_port": ports.get("metrics_port") or free_port(),
        "parallel_workers": 0,  # the model in the server process: one copy in memory
    }, indent=2))  # fmt: skip
    model_settings = {
        "name": name,
        "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": f"models:/{name}/{champion_version(run)}"},
    }
    (folder / name / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return ServiceSpec(
        name="mlserver",
        command=[mlserver_executable(), "start", str(folder)],
        health_path=f"/v2/models/{name}/ready",
        env={"MLSERVER_HTTP_PORT": "{port}", **_server_env(run)},
    )


def v2_request(prompt: str) -> dict[str, Any]:
    """An Open Inference (V2) request for one prompt, shaped like the tutorial's input.json."""
    return {"inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": [prompt]}]}


def ask(run: Run, question: str = EXAMPLE["question"], context: str = EXAMPLE["context"],
        server: str = "fastapi") -> dict[str, Any]:  # fmt: skip
    """Ask a running server (`fastapi` of 05, `mlserver` of 06) one question: its SQL, the
    version that answered, and the `curl` command that asks the same."""
    recorded = run.state.section("serving").get(server, {})
    if not recorded.get("url"):
        raise RuntimeError(f"no {server} server recorded for this run: run its stage first")
    if server == "mlserver":
        endpoint = recorded["infer_url"]
        body: dict[str, Any] = v2_request(build_prompt(question, context))
    else:
        endpoint, body = f"{recorded['url']}/predict", {"question": question, "context": context}
    response = requests.post(endpoint, json=body, timeout=120)
    response.raise_for_status()
    answer = response.json()
    sql = answer["outputs"][0]["data"][0].strip() if server == "mlserver" else answer["sql"]
    curl = (
        f"curl -s -X POST {endpoint} -H 'Content-Type: application/json' "
        f"-d {shlex.quote(json.dumps(body))}"
    )
    version = answer.get("model_version") or recorded["model_version"]
    return {"sql": sql, "model_version": version, "question": question, "curl": curl,
            "response": answer}  # fmt: skip
