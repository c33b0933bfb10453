"""What stages 05 and 06 share: the champion they serve, the server specs, asking them."""

from __future__ import annotations

import json
import shlex
from typing import Any

import requests

from tunekit import workloads
from tunekit.credentials import LocalSecrets
from tunekit.prompts import build_prompt
from tunekit.registry import CHAMPION
from tunekit.run import Run, skipped_in_dry_run
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
    """`python -m tunekit.serve` on the champion: the gke profile's Deployment, as a process."""
    objects = workloads.serve_deployment(
        run, champion_uri(run), champion_version(run), tracking_uri(run)
    )
    process = workloads.as_process(
        workloads.container_of(objects, "Deployment"),
        mounts={},
        secrets=LocalSecrets(run.dir).value,
    )
    return ServiceSpec("fastapi", process.argv, process.health_path, process.env)


def mlserver_spec(run: Run) -> ServiceSpec:
    """`mlserver start` on the champion: the gke profile's ServingRuntime container, as a process.

    KServe's storage initializer copies the model into /mnt/models; here MLServer's MLflow
    runtime reads the registered version itself (`models:/NAME/VERSION`) and /mnt/models is an
    empty folder of the run.
    """
    from tunekit import mlserver_env

    name, version = run.settings.registered_model_name, champion_version(run)
    folder = run.dir / "mlserver"
    folder.mkdir(parents=True, exist_ok=True)
    # gRPC and metrics ports are chosen once per run and kept, so a re-run can reuse the server
    ports_file = folder / "ports.json"
    ports = json.loads(ports_file.read_text()) if ports_file.is_file() else {}
    ports = {k: ports.get(k) or free_port() for k in ("grpc", "metrics")}
    ports_file.write_text(json.dumps(ports))
    runtime = workloads.mlserver_runtime(run, tracking_uri(run), version)
    process = workloads.as_process(
        workloads.container_of(runtime, "ServingRuntime"),
        mounts={workloads.MODEL_DIR: str(folder / "models")},
        overrides={
            "MLSERVER_MODEL_NAME": name,
            "MLSERVER_MODEL_URI": f"models:/{name}/{version}",
            "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_GRPC_PORT": str(ports["grpc"]),
            "MLSERVER_METRICS_PORT": str(ports["metrics"]),
        },
        executables={"mlserver": mlserver_env.executable()},
        secrets=LocalSecrets(run.dir).value,
    )
    (folder / "models").mkdir(exist_ok=True)
    return ServiceSpec("mlserver", process.argv, f"/v2/models/{name}/ready", process.env)


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
    curl = (
        f"curl -s -X POST {endpoint} -H 'Content-Type: application/json' "
        f"-d {shlex.quote(json.dumps(body))}"
    )
    if skipped_in_dry_run(run, f"asking {server}"):
        return {"sql": "(dry run: not asked)", "model_version": recorded["model_version"],
                "question": question, "curl": curl, "response": None}  # fmt: skip
    response = requests.post(endpoint, json=body, timeout=120)
    response.raise_for_status()
    answer = response.json()
    sql = answer["outputs"][0]["data"][0].strip() if server == "mlserver" else answer["sql"]
    version = answer.get("model_version") or recorded["model_version"]
    return {"sql": sql, "model_version": version, "question": question, "curl": curl,
            "response": answer}  # fmt: skip
