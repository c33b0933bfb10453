"""What stages 05 and 06 share: the champion's version they serve, and asking them."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

from tunekit.prompts import build_prompt
from tunekit.records import ServerName
from tunekit.run import Run

# The GKE tutorial's own question and context (its kserve/input.json), and the SQL that
# answers it: what stages 05 and 06 ask by default
TUTORIAL = {
    "question": 'What is the total number of attendees with age over 30 at kubecon "eu"?',
    "context": "CREATE TABLE attendees (name VARCHAR, age INTEGER, kubecon VARCHAR)",
    "answer": 'SELECT COUNT(*) FROM attendees WHERE age > 30 AND kubecon = "eu"',
}


# vLLM's CompletionRequest took a grammar as top-level `guided_grammar` until 0.11.0 added
# `structured_outputs: {grammar: ...}` (0.11 deprecates the old field, 0.12.0 removes it). Its
# requests allow unknown fields (vllm/entrypoints/openai/protocol.py `OpenAIBaseModel`,
# extra="allow"): an old field sent to a new vLLM is ignored and the answer is unconstrained
STRUCTURED_OUTPUTS_SINCE = (0, 11, 0)


def completion_request(
    question: str,
    context: str,
    model: str,
    vllm: tuple[int, ...],
    max_tokens: int = 96,
    free_literals: bool = False,
) -> dict[str, Any]:
    """An OpenAI completions request (KServe's `/openai/v1/completions`) for one question to
    the adapter `model`, greedy, its answer held to the question's SQL grammar in the field
    that `vllm` (its version) reads. The grammar is parsed first: a grammar vLLM cannot compile
    has crashed its engine (vllm-project/vllm#16911, #43920)."""
    import xgrammar

    from tunekit.grammar import sql_grammar

    grammar = sql_grammar(question, context, free_literals)
    xgrammar.Grammar.from_ebnf(grammar)  # raises for a grammar xgrammar cannot parse
    body: dict[str, Any] = {
        "model": model,
        "prompt": build_prompt(question, context),
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    if vllm >= STRUCTURED_OUTPUTS_SINCE:
        body["structured_outputs"] = {"grammar": grammar}
    else:
        body["guided_grammar"] = grammar
    return body


def vllm_request(
    run: Run, question: str = TUTORIAL["question"], context: str = TUTORIAL["context"]
) -> dict[str, Any] | None:
    """The question as a request to stage 06's vLLM InferenceService (gke, when it was
    deployed): its in-cluster URL, the body (`completion_request`, for the vLLM version stage
    06 recorded) and the `curl` command that sends it from inside the cluster; None without
    one."""
    recorded = run.state.section("serving").get("vllm")
    if not recorded:
        return None
    if "vllm_version" not in recorded:
        raise RuntimeError(
            "stage 06 recorded no vLLM version for its InferenceService (an earlier kit's "
            "record): run stage 06 again"
        )
    vllm = tuple(recorded["vllm_version"])
    body = completion_request(question, context, recorded["model"], vllm,
                              free_literals=run.settings.free_literals)  # fmt: skip
    curl = (f"curl -s -X POST {recorded['openai_url']} -H 'Content-Type: application/json' "
            f"-d {shlex.quote(json.dumps(body))}")  # fmt: skip
    return {"url": recorded["openai_url"], "body": body, "curl": curl}


def champion_version(run: Run) -> str:
    """The version the champion alias names (stage 04 recorded which; a record of an earlier
    kit, which registered champions only, has it as `version`)."""
    registry = run.state.section("registry")
    version = registry.get("champion_version") or registry.get("version")
    if not version:
        raise RuntimeError("no registered champion recorded for this run: run stage 04 first")
    return str(version)


def challenger_version(run: Run) -> str:
    """The challenger's version while a rollout is on ('' when there is none)."""
    return str(run.state.section("registry").get("challenger_version") or "")


def v2_request(prompt: str) -> dict[str, Any]:
    """An Open Inference (V2) request for one prompt, shaped like the tutorial's input.json
    (which names its one input `args`)."""
    return {"inputs": [{"name": "args", "shape": [1], "datatype": "BYTES", "data": [prompt]}]}


# POSTs a body to a deployed server's endpoint, answers its JSON (None where nothing is
# deployed to ask): the run's backend's `ask`
Post = Callable[[str, dict[str, Any]], "dict[str, Any] | None"]


def ask(run: Run, post: Post, question: str = TUTORIAL["question"],
        context: str = TUTORIAL["context"], server: ServerName = "fastapi",
        expected: str = "") -> dict[str, Any]:  # fmt: skip
    """Ask a running server (`fastapi` of 05, `mlserver` of 06) one question: its SQL, the
    version that answered, the `curl` command that asks the same and, given the `expected`
    SQL (empty: the tutorial's answer to the tutorial's question), whether the answer is
    `correct` (it returns the same rows: `tunekit.evaluate`)."""
    if not expected and (question, context) == (TUTORIAL["question"], TUTORIAL["context"]):
        expected = TUTORIAL["answer"]
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
    answer = post(endpoint, body)
    if answer is None:
        return {"sql": "(not asked: nothing is deployed)", "question": question, "curl": curl,
                "model_version": recorded["model_version"], "response": None,
                "expected": expected, "correct": None}  # fmt: skip
    sql = answer["outputs"][0]["data"][0].strip() if server == "mlserver" else answer["sql"]
    version = answer.get("model_version") or recorded["model_version"]
    return {"sql": sql, "model_version": version, "question": question, "curl": curl,
            "response": answer, "expected": expected,
            "correct": judge(question, context, expected, sql)}  # fmt: skip


def judge(question: str, context: str, expected: str, sql: str) -> bool | None:
    """Whether `sql` answers like `expected` on SQLite tables made from `context` (None when
    nothing is expected)."""
    if not expected:
        return None
    from tunekit.evaluate import score

    row = {"question": question, "context": context, "answer": expected}
    return score(row, sql).execution


def compare_servers(
    run: Run, post: Post, question: str = TUTORIAL["question"], context: str = TUTORIAL["context"]
) -> Any:
    """The same question to each server the run deployed (05's FastAPI, 06's MLServer): a
    table of server, version and SQL. Both serve the champion greedily, so the SQL matches."""
    import pandas as pd
    import requests

    rows = []
    servers: tuple[ServerName, ...] = ("fastapi", "mlserver")
    for server in servers:
        if not run.state.section("serving").get(server, {}).get("url"):
            continue  # its stage did not run
        try:
            answer = ask(run, post, question, context, server=server)
        except requests.ConnectionError:
            answer = {"sql": "(not reachable: stopped?)", "model_version": None}
        rows.append({"server": server, "version": answer["model_version"], "sql": answer["sql"]})
    return pd.DataFrame(rows, columns=["server", "version", "sql"])
