"""What stages 05 and 06 share: the champion's version they serve, and asking them."""

from __future__ import annotations

import json
import shlex
from typing import Any

from tunekit.prompts import build_prompt
from tunekit.run import Run

# The tutorial's style of question, with its CREATE TABLE context.
EXAMPLE = {
    "question": "What is the total number of points when the opponent is utah jazz?",
    "context": "CREATE TABLE table_name_12 (points INTEGER, opponent VARCHAR)",
}


def champion_version(run: Run) -> str:
    """The version the alias points at now (stage 04 recorded which)."""
    registry = run.state.section("registry")
    if not registry.get("version"):
        raise RuntimeError("no registered champion recorded for this run: run stage 04 first")
    return str(registry["version"])


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
    from tunekit.backends import backend_for

    answer = backend_for(run).ask(run, endpoint, body)
    if answer is None:
        return {"sql": "(not asked: nothing is deployed)", "question": question, "curl": curl,
                "model_version": recorded["model_version"], "response": None}  # fmt: skip
    sql = answer["outputs"][0]["data"][0].strip() if server == "mlserver" else answer["sql"]
    version = answer.get("model_version") or recorded["model_version"]
    return {"sql": sql, "model_version": version, "question": question, "curl": curl,
            "response": answer}  # fmt: skip


def compare_servers(
    run: Run, question: str = EXAMPLE["question"], context: str = EXAMPLE["context"]
) -> Any:
    """The same question to each server the run deployed (05's FastAPI, 06's MLServer): a
    table of server, version and SQL. Both serve the champion greedily, so the SQL matches."""
    import pandas as pd
    import requests

    rows = []
    for server in ("fastapi", "mlserver"):
        if not run.state.section("serving").get(server, {}).get("url"):
            continue  # its stage did not run
        try:
            answer = ask(run, question, context, server=server)
        except requests.ConnectionError:
            answer = {"sql": "(not reachable: stopped?)", "model_version": None}
        rows.append({"server": server, "version": answer["model_version"], "sql": answer["sql"]})
    return pd.DataFrame(rows, columns=["server", "version", "sql"])
