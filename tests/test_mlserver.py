"""Stage 06's MLServer runtime (lib/tunekit/mlserver_runtime.py), without a model: its request
checks and MLServer's own batching of checked requests, run by MLServer's environment
(.venv-mlserver: the runtime never runs in the kit's), and the settings that reach it locally
and on GKE. The served model's side (real tokenizer, health under load, batches split back)
is in test_serve.py, on its served run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tunekit.backends import containers
from tunekit.backends.local import mlserver_env
from tunekit.backends.local.processes import install_runtime

from .conftest import REPO, rendered_one

LIMITS = {"max_body_bytes": 2000, "max_prompts": 3, "max_prompt_tokens": 5}


def v2(*prompts: Any, shape: list[int] | None = None, name: str = "text",
       datatype: str = "BYTES") -> dict[str, Any]:  # fmt: skip
    data = list(prompts)
    return {"inputs": [{"name": name, "shape": shape or [len(data)], "datatype": datatype,
                        "data": data}]}  # fmt: skip


# name: (request body, HTTP headers, expected status, what the message must say); tokens are
# counted here as words (the e2e tests count with the served model's tokenizer)
CASES: dict[str, tuple[dict, dict, int, str]] = {
    "one prompt": (v2("which venue?"), {}, 200, ""),
    # one request's content type would decide a merged batch's: each decodes by the model's
    "a content type of its own": (
        {
            "inputs": [{**v2("a")["inputs"][0], "parameters": {"content_type": "np"}}],
            "parameters": {"content_type": "np"},
        },
        {},
        200,
        "",
    ),
    "as many prompts as allowed, shape [n, 1]": (v2("a", "b", "c", shape=[3, 1]), {}, 200, ""),
    "too many prompts": (
        v2("a", "b", "c", "d"),
        {},
        413,
        "the request carries 4 prompts; this server takes at most 3 (max_prompts)",
    ),
    "a body over the limit": (
        v2("a"),
        {"content-length": "2001"},
        413,
        "the request body is 2001 bytes; this server takes at most 2000 (max_body_bytes)",
    ),
    "prompts over the limit, no content-length": (
        v2("é" * 1001),
        {},
        413,
        "the prompts are 2002 bytes",
    ),
    "a prompt over the token limit": (
        v2("ok", "one two three four five six"),
        {},
        422,
        "prompt 1 is 6 tokens; this server takes at most 5 (max_prompt_tokens)",
    ),
    "a prompt over the model's positions": (
        v2("one two three four five"),
        {},
        422,
        "exceeds the model's positions (at most 4",
    ),
    "a shape that miscounts the prompts": (
        v2("a", "b", shape=[1]),
        {},
        400,
        "shape [1] does not match its 2 prompts",
    ),
    "no prompts": (v2(), {}, 400, "has no prompts"),
    "an empty prompt": (v2("a", "  "), {}, 400, "prompt 1 is empty"),
    "two inputs": ({"inputs": v2("a")["inputs"] * 2}, {}, 400, "not 2 inputs"),
    # questions and contexts row by row (per-row inputs: MLServer's batcher drops request
    # parameters, SeldonIO/MLServer#1541), made prompts by the model's template
    "question and context, row by row": (
        {
            "inputs": [
                *v2("q1", "q2", name="question")["inputs"],
                *v2("c1", "c2", name="context")["inputs"],
            ]
        },
        {},
        200,
        "",
    ),
    "a question without its context": (
        {
            "inputs": [
                *v2("q1", "q2", name="question")["inputs"],
                *v2("c1", name="context")["inputs"],
            ]
        },
        {},
        400,
        "2 questions for 1 contexts",
    ),
    "a context that is not tables": (
        {
            "inputs": [
                *v2("q1", name="question")["inputs"],
                *v2("DROP TABLE t", name="context")["inputs"],
            ]
        },
        {},
        422,
        "prompt 0: statement 1 of the context is not a CREATE TABLE",
    ),
    "numbers": (v2(1, 2, datatype="INT64"), {}, 400, "must be BYTES"),
    "data that is not a list": (
        {"inputs": [{"name": "p", "shape": [1], "datatype": "BYTES", "data": "a"}]},
        {},
        400,
        "list of prompts",
    ),
}

# Run by MLServer's Python: each case through `check_request`, then MLServer's own batcher
# (`BatchedRequests`, what `max_batch_size` turns on) on two checked requests and on two
# unchecked ones whose shape miscounts their data.
SCRIPT = """
import json, sys
from mlserver.batching.requests import BatchedRequests
from mlserver.types import InferenceRequest, InferenceResponse
from tunekit.mlserver_runtime import Limits, RequestRejected, check_request

cases, limits = json.loads(sys.argv[1]), Limits.from_extra(json.loads(sys.argv[2]))
words = lambda prompt: len(prompt.split())
# the model's own: TextToSQL.prompt and TextToSQL.check (here stand-ins of the same contract)
compose = lambda question, context: f"{question}:{context}"
problem = lambda prompt: ("statement 1 of the context is not a CREATE TABLE"
                          if "DROP" in prompt else "")
results = {}
for name, (body, headers) in cases.items():
    request = InferenceRequest.model_validate({**body, "parameters": {"headers": headers}})
    try:
        checked = check_request(request, limits, words, 4, compose, problem)
        content_type = checked.parameters.content_type if checked.parameters else None
        results[name] = [200, {**checked.inputs[0].model_dump(), "request_type": content_type}]
    except RequestRejected as e:
        results[name] = [e.status_code, str(e)]

def answered(requests):
    batch = BatchedRequests(dict(enumerate(requests)))
    merged = batch.merged_request.inputs
    prompts = merged[0].data.root
    outputs = [{"name": "output-0", "shape": [len(prompts)], "datatype": "BYTES",
                "data": [f"answer to {p}" for p in prompts]}]
    response = InferenceResponse(model_name="m", outputs=outputs)
    split = batch.split_response(response)
    return {"merged": [[i.name, i.shape] for i in merged],
            "answers": [split[i].outputs[0].data.root for i in range(len(requests))]}

def request(body):
    return InferenceRequest.model_validate(body)

two = [check_request(request(body), limits, words) for body in json.loads(sys.argv[3])]
miscounted = [request(body) for body in json.loads(sys.argv[4])]
print(json.dumps({"cases": results, "checked": answered(two),
                  "miscounted": answered(miscounted)}))
"""


def mlserver_python() -> Path:
    try:
        return Path(mlserver_env.executable(create_missing=False)).parent / "python"
    except mlserver_env.MLServerUnavailable as e:
        pytest.skip(str(e))


def in_mlserver(tmp: Path, script: str, *args: str, env: dict[str, str] | None = None) -> str:
    """`script` run by MLServer's Python with the kit's runtime importable as the local
    profile installs it (the run's mlserver/python)."""
    install_runtime(tmp / "python")
    done = subprocess.run(
        [str(mlserver_python()), "-c", script, *args],
        env={**os.environ, **(env or {}), "PYTHONPATH": str(tmp / "python")},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cases = {name: [body, headers] for name, (body, headers, _, _) in CASES.items()}
    two = [v2("q1", "q2", name="prompt"), v2("q3", name="text", shape=[1, 1])]
    miscounted = [v2("a1", "a2", "a3", shape=[1]), v2("b1")]
    out = in_mlserver(tmp_path_factory.mktemp("checks"), SCRIPT, json.dumps(cases),
                      json.dumps(LIMITS), json.dumps(two), json.dumps(miscounted))  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(CASES))
def test_a_request_is_checked_before_it_joins_a_batch(checked: dict, name: str) -> None:
    _, _, status, message = CASES[name]
    got_status, got = checked["cases"][name]
    assert got_status == status, got
    if status == 200:
        body = CASES[name][0]["inputs"][0]
        assert got["name"] == "prompt" and got["shape"] == [len(body["data"])]
        if body["name"] == "question":
            contexts = CASES[name][0]["inputs"][1]["data"]
            expected = [f"{q}:{c}" for q, c in zip(body["data"], contexts, strict=True)]
            assert got["data"] == expected
        else:
            assert got["data"] == body["data"]
        assert got.get("parameters") is None and got["request_type"] is None
    else:
        assert message in got


def test_mlservers_batcher_splits_checked_requests_back_in_order(checked: dict) -> None:
    """MLServer merges requests along the first dimension, input by input name, and splits the
    answers by each request's shape[0] (mlserver/batching/requests.py): checked requests
    (one input, renamed `prompt`, shape [n]) merge into one input and each gets its own."""
    assert checked["checked"]["merged"] == [["prompt", [3]]]
    assert checked["checked"]["answers"] == [["answer to q1", "answer to q2"], ["answer to q3"]]


def test_unchecked_a_miscounted_shape_hands_answers_to_the_neighbour(checked: dict) -> None:
    """Why `check_request` refuses a shape that miscounts its data: MLServer's batcher trusts
    shape[0], so the second request would get the first one's answer."""
    assert checked["miscounted"]["answers"] == [["answer to a1"], ["answer to a2"]]


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"max_prompt": 3}, "unknown limits ['max_prompt']"),
        ({"max_prompts": 0}, "limit max_prompts must be a whole number >= 1, got 0"),
        ({"max_prompts": "8"}, "got '8'"),
    ],
)
def test_bad_limits_fail_the_load_naming_the_limit(tmp_path: Path, extra: dict, error: str):
    script = """
import json, sys
from tunekit.mlserver_runtime import Limits
try:
    Limits.from_extra(json.loads(sys.argv[1]))
except ValueError as e:
    print(e)
"""
    assert error in in_mlserver(tmp_path, script, json.dumps(extra))


def test_mlserver_reads_the_containers_settings_and_finds_the_runtime(tmp_path: Path) -> None:
    """The container's environment, as MLServer's own settings read it (mlserver/settings.py:
    MLSERVER_ server settings, MLSERVER_MODEL_ model settings, `parameters.extra` from
    MLSERVER_MODEL_EXTRA), resolves the kit's runtime and turns adaptive batching on."""
    env = _rendered_env()
    env.pop("PYTHONPATH")  # the image's path; here the runtime lies under tmp_path
    script = """
from mlserver.settings import ModelParameters, ModelSettings, Settings
from tunekit.mlserver_runtime import Limits, TunekitMLflowRuntime
model = ModelSettings()
model.parameters = ModelParameters()
assert model.implementation is TunekitMLflowRuntime, model.implementation
server = Settings()
print(model.max_batch_size, model.max_batch_time, Limits.from_extra(model.parameters.extra),
      server.parallel_workers, server.grpc_max_message_length)
"""
    out = in_mlserver(tmp_path, script, env=env).strip().splitlines()[-1]
    limits = ", ".join(f"{k}={v}" for k, v in containers.MLSERVER_LIMITS.items())
    max_body = containers.MLSERVER_LIMITS["max_body_bytes"]
    assert out == f"8 0.01 Limits({limits}) 0 {max_body}"


def _rendered_env() -> dict[str, str]:
    """The ServingRuntime container's plain environment as manifests/06-kserve.yaml has it."""
    import yaml

    for doc in yaml.safe_load_all((REPO / "manifests" / "06-kserve.yaml").read_text()):
        if doc and doc["kind"] == "ServingRuntime":
            env = doc["spec"]["containers"][0]["env"]
            return {e["name"]: e["value"] for e in env if "value" in e}
    raise AssertionError("no ServingRuntime in manifests/06-kserve.yaml")


def test_the_servingruntime_runs_the_kits_runtime_from_the_image(dry_run) -> None:
    """KServe runs what the ServingRuntime says: the runtime class, on a PYTHONPATH where the
    image's Dockerfile put the runtime's file, with batching and the limits, probed on the
    health endpoints the runtime keeps free."""
    runtime = rendered_one(dry_run, "ServingRuntime")["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in runtime["env"]}
    assert env["MLSERVER_MODEL_IMPLEMENTATION"] == "tunekit.mlserver_runtime.TunekitMLflowRuntime"
    assert env["MLSERVER_MODEL_MAX_BATCH_SIZE"] == "8"
    assert env["MLSERVER_MODEL_MAX_BATCH_TIME"] == "0.01"
    assert json.loads(env["MLSERVER_MODEL_EXTRA"]) == containers.MLSERVER_LIMITS
    assert env["MLSERVER_PARALLEL_WORKERS"] == "0"
    dockerfile = (REPO / "docker" / "kserve" / "Dockerfile").read_text()
    for module in containers.MLSERVER_RUNTIME_MODULES:  # the runtime's modules, alone
        copied = re.search(rf"^COPY lib/tunekit/{re.escape(module)} (\S+)$", dockerfile, re.M)
        assert copied, f"docker/kserve/Dockerfile does not copy {module}"
        assert copied[1] == f"{env['PYTHONPATH']}/tunekit/{module}"
    assert runtime["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert runtime["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
