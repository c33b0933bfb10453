"""Stages 04-06 end to end: the default local fine-tune registered, served by `tunekit.serve`
(FastAPI) and by MLServer (Open Inference V2), and by `mlflow models serve`, over HTTP.

The servers are started the way stages 05 and 06 start them (the runner executes the notebooks),
then probed with real requests: the contract, every kind of bad input, and bounded load runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tunekit.local_services import healthy, running_services
from tunekit.prompts import build_prompt
from tunekit.run import recorded_run
from tunekit.server_requests import TUTORIAL, judge, v2_request

from .conftest import tunekit_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    run_dir = tmp_path_factory.mktemp("serve") / "run"
    # on PostgreSQL, as on the cluster (SQLite, the local default, runs in test_runner's series
    # and the browser test's)
    # the default local fine-tune (make demo's): its champion answers the tutorial's question
    done = tunekit_cli("run", "--stages", "01-06", "--run-dir", str(run_dir),
                       "-p", "mlflow_backend=postgresql", "-p", "eval_set_rows=12",
                       timeout=1200)  # fmt: skip
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        state = recorded_run(run_dir).state
        yield {
            "run_dir": run_dir,
            "url": state.section("serving")["fastapi"]["url"],
            "mlserver": state.section("serving")["mlserver"],
            "registry": state.section("registry"),
            "output": done.stdout,
        }
    finally:
        tunekit_cli("down", "--run-dir", str(run_dir))


TUTORIAL_ASKED = {"question": TUTORIAL["question"], "context": TUTORIAL["context"]}
# The GKE tutorial's own request (ai-on-gke tutorials-and-examples/mlflow/finetune-gemma:
# deploy-gemma2/kserve/input.json), byte for byte: its one input is named `args`
TUTORIAL_MESSAGE = (
    'Question: What is the total number of attendees with age over 30 at kubecon "eu"?\n'
    "Context: CREATE TABLE attendees (name VARCHAR, age INTEGER, kubecon VARCHAR)\n\nAnswer:"
)
TUTORIAL_INPUT_JSON = {
    "inputs": [{"name": "args", "shape": [1], "datatype": "BYTES", "data": [TUTORIAL_MESSAGE]}]
}


def correct(sql: str) -> bool:
    return bool(judge(TUTORIAL["question"], TUTORIAL["context"], TUTORIAL["answer"], sql))


def test_the_kit_trains_on_the_tutorials_prompt_format() -> None:
    assert build_prompt(TUTORIAL["question"], TUTORIAL["context"]) == TUTORIAL_MESSAGE


def test_stages_05_and_06_answered_the_tutorials_question(served: dict) -> None:
    """Their notebooks ask it by default and print the answer checked by execution."""
    import nbformat

    for stage in ("05-deploy-simple", "06-deploy-kserve"):
        executed = nbformat.read(served["run_dir"] / "notebooks" / f"{stage}.ipynb", 4)
        printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
        assert "correct: it returns what the expected SQL returns" in printed, (stage, printed)


def test_the_tutorials_get_request_gets_its_sql(served: dict) -> None:
    """deploy-gemma2/simple/main.py: `GET /predict?message=...`, the message being the prompt."""
    got = requests.get(f"{served['url']}/predict", params={"message": TUTORIAL_MESSAGE}, timeout=60)
    assert got.status_code == 200 and correct(got.json()["sql"]), got.text


def test_the_tutorials_input_json_gets_its_sql_from_mlserver(served: dict) -> None:
    v2 = infer(served, TUTORIAL_INPUT_JSON)
    assert v2.status_code == 200, v2.text
    assert correct(v2.json()["outputs"][0]["data"][0]), v2.text


def test_mlflow_models_serve_of_the_champion_gets_the_tutorials_sql(served: dict, tmp_path) -> None:
    """`mlflow models serve` of the registered champion: what the logged model's signature and
    inference config (return_full_text=False) make of the tutorial's prompt."""
    import subprocess

    from tunekit.credentials import READER, child_environment
    from tunekit.local_services import free_port
    from tunekit.stages import login
    from tunekit.tracking import tracking_uri

    run = recorded_run(served["run_dir"])
    reader, port = login(run, READER), free_port()
    env = child_environment({
        # mlflow runs `uvicorn` by name (mlflow/pyfunc/backend.py `serve`): the venv's, as for
        # a user whose environment is activated
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": tracking_uri(run), "HF_HUB_OFFLINE": "1",
        "MLFLOW_TRACKING_USERNAME": reader["username"],
        "MLFLOW_TRACKING_PASSWORD": reader["password"],
    })  # fmt: skip
    uri = served["registry"]["model_uri"]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(1)
        answer = requests.post(f"http://127.0.0.1:{port}/invocations",
                               json={"inputs": [TUTORIAL_MESSAGE]}, timeout=120)  # fmt: skip
        assert answer.status_code == 200, (tmp_path / "serve.log").read_text()[-3000:]
        [sql] = answer.json()["predictions"]
        assert correct(sql), sql
        # a context that is not tables: a 400 naming it (tunekit.pyfunc_model), not a 500
        bad = build_prompt("How many?", "DROP TABLE attendees")
        refused = requests.post(f"http://127.0.0.1:{port}/invocations",
                                json={"inputs": [bad]}, timeout=120)  # fmt: skip
        assert refused.status_code == 400, refused.text
        assert "prompt 0: statement 1 of the context is not a CREATE TABLE" in refused.text
    finally:
        server.terminate()
        server.wait(30)


def test_stage_04_registered_the_champion(served: dict) -> None:
    registry = served["registry"]
    assert registry["version"] == 1 and registry["alias"] == "champion"
    assert registry["model_uri"] == "models:/gemma2-text-to-sql@champion"


def test_the_fine_tune_and_the_champion_are_rows_of_postgresql(served: dict) -> None:
    from .test_postgres import _query

    run = recorded_run(served["run_dir"])
    finetune, registry = run.state.section("finetune"), served["registry"]
    assert run.state.section("mlflow")["backend"] == "postgresql"
    runs = _query(run, "mlflow", "SELECT run_uuid, status FROM runs")
    assert (finetune["mlflow_run_id"], "FINISHED") in runs
    versions = _query(run, "mlflow", "SELECT name, version, run_id FROM model_versions")
    registered = (registry["registered_model_name"], registry["version"], registry["run_id"])
    assert registered in versions and registry["run_id"] == finetune["mlflow_run_id"]
    assert ("champion",) in _query(run, "mlflow", "SELECT alias FROM registered_model_aliases")


def test_health_readiness_and_docs(served: dict) -> None:
    url = served["url"]
    assert requests.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{url}/readyz", timeout=5).json()
    assert ready["status"] == "ready" and ready["model_version"] == "1"
    assert requests.get(f"{url}/docs", timeout=5).status_code == 200
    paths = requests.get(f"{url}/openapi.json", timeout=5).json()["paths"]
    assert {"/predict", "/healthz", "/readyz"} <= set(paths)


def test_post_question_and_context(served: dict) -> None:
    answer = requests.post(f"{served['url']}/predict", json=TUTORIAL_ASKED, timeout=60).json()
    assert answer["model_version"] == "1" and isinstance(answer["sql"], str)
    assert answer["model_uri"] == "models:/gemma2-text-to-sql@champion"


def test_get_predict_is_the_tutorials_contract(served: dict) -> None:
    message = build_prompt(TUTORIAL_ASKED["question"], TUTORIAL_ASKED["context"])
    got = requests.get(f"{served['url']}/predict", params={"message": message}, timeout=60)
    posted = requests.post(f"{served['url']}/predict", json={"prompt": message}, timeout=60)
    assert got.status_code == 200 and got.json()["sql"] == posted.json()["sql"]  # both greedy


def test_max_new_tokens_bounds_the_answer(served: dict) -> None:
    body = {**TUTORIAL_ASKED, "max_new_tokens": 2}
    short = requests.post(f"{served['url']}/predict", json=body, timeout=60).json()["sql"]
    assert len(short.split()) <= 2


@pytest.mark.parametrize(
    ("method", "kwargs", "says"),
    [
        ("post", {"json": {"question": "q"}}, "question` and `context"),
        ("post", {"json": {"context": "CREATE TABLE t (a INT)"}}, "question` and `context"),
        ("post", {"json": {"prompt": "   "}}, "`prompt` is empty"),
        ("post", {"json": {"prompt": "x" * 4001}}, "at most 4000 characters"),
        ("post", {"json": {"prompt": "p", "question": "q"}}, "not both"),
        ("post", {"json": {"prompt": "select 1 ; " * 360}}, "exceeds the model's 512 positions"),
        ("get", {"params": {"message": "select 1 ; " * 360}}, "exceeds the model's"),
        ("post", {"json": {**TUTORIAL_ASKED, "max_new_tokens": 0}}, "greater than or equal to 1"),
        (
            "post",
            {"json": {**TUTORIAL_ASKED, "max_new_tokens": 100000}},
            "less than or equal to 256",
        ),
        ("post", {"json": {**TUTORIAL_ASKED, "temperature": -1}}, "greater than or equal to 0"),
        ("post", {"json": {**TUTORIAL_ASKED, "temperature": "hot"}}, "valid number"),
        ("post", {"json": {**TUTORIAL_ASKED, "colour": "red"}}, "Extra inputs are not permitted"),
        ("post", {"json": ["not", "an", "object"]}, "valid dictionary"),
        (
            "post",
            {"data": "{not json", "headers": {"Content-Type": "application/json"}},
            "JSON decode error",
        ),
        ("get", {"params": {}}, "Field required"),
        ("get", {"params": {"message": ""}}, "at least 1 character"),
        ("get", {"params": {"message": "  "}}, "`message` is empty"),
        ("get", {"params": {"message": "hi", "max_new_tokens": "lots"}}, "valid integer"),
    ],
)
def test_bad_input_is_a_4xx_with_a_message(served: dict, method: str, kwargs: dict, says: str):
    response = getattr(requests, method)(f"{served['url']}/predict", timeout=30, **kwargs)
    assert 400 <= response.status_code < 500, response.text
    assert says in json.dumps(response.json()), response.text


def test_load_run_has_no_errors_and_batches_requests(served: dict) -> None:
    """200 requests at concurrency 8: all answered, well-formed; requests shared generate calls."""
    url = served["url"]
    before = requests.get(f"{url}/readyz", timeout=5).json()
    questions = [
        {"question": f"What is the venue when the week is {i % 17 + 1}?",
         "context": "CREATE TABLE game (venue VARCHAR, week INTEGER)"}
        for i in range(200)
    ]  # fmt: skip

    def ask(body: dict) -> requests.Response:
        return requests.post(f"{url}/predict", json=body, timeout=120)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(ask, questions))
    assert [r.status_code for r in responses] == [200] * 200
    assert all(isinstance(r.json()["sql"], str) and r.json()["model_version"] == "1"
               for r in responses)  # fmt: skip
    after = requests.get(f"{url}/readyz", timeout=5).json()
    calls = after["generate_calls"] - before["generate_calls"]
    assert after["requests"] - before["requests"] == 200
    assert calls < 200 / 2, f"{calls} generate calls for 200 concurrent requests: no batching"


def infer(served: dict, body: Any, **kwargs: Any) -> requests.Response:
    return requests.post(served["mlserver"]["infer_url"], json=body, timeout=120, **kwargs)


def test_mlserver_is_ready_and_answers_like_fastapi(served: dict) -> None:
    url = served["mlserver"]["url"]
    assert requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
    assert requests.get(f"{url}/v2/models/gemma2-text-to-sql/ready", timeout=5).status_code == 200
    other = {
        "question": "Which venue has a week of 3?",
        "context": "CREATE TABLE game (venue VARCHAR, week INTEGER)",
    }
    for example in (TUTORIAL_ASKED, other):
        v2 = infer(served, v2_request(build_prompt(example["question"], example["context"])))
        assert v2.status_code == 200, v2.text
        [output] = v2.json()["outputs"]
        fastapi = requests.post(f"{served['url']}/predict", json=example, timeout=60).json()
        assert output["data"][0].strip() == fastapi["sql"]  # same version, greedy: same text


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"inputs": "not a list"}, None),
        ({"not_inputs": []}, None),
        ({"inputs": [{"name": "prompt", "shape": [1], "datatype": "NOPE", "data": ["x"]}]}, None),
        (v2_request("x"), "/v2/models/no-such-model/infer"),
    ],
)
def test_mlserver_rejects_bad_input_with_a_4xx(served: dict, body: dict, path: str | None):
    url = served["mlserver"]["url"] + path if path else served["mlserver"]["infer_url"]
    response = requests.post(url, json=body, timeout=30)
    assert 400 <= response.status_code < 500, response.text
    assert response.text


def test_mlserver_load_run_has_no_errors(served: dict) -> None:
    prompts = [build_prompt(f"Which venue has a week of {i % 17 + 1}?",
                            "CREATE TABLE game (venue VARCHAR, week INTEGER)")
               for i in range(200)]  # fmt: skip
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda p: infer(served, v2_request(p)), prompts))
    assert [r.status_code for r in responses] == [200] * 200
    assert all(isinstance(r.json()["outputs"][0]["data"][0], str) for r in responses)


GAME = "CREATE TABLE game (venue VARCHAR, week INTEGER)"


def v2_prompts(prompts: list[str], shape: list[int] | None = None) -> dict[str, Any]:
    """A V2 request of several prompts (MLServer batches along the first dimension)."""
    return {"inputs": [{"name": "prompt", "shape": shape or [len(prompts)], "datatype": "BYTES",
                        "data": prompts}]}  # fmt: skip


def mlserver_stats(served: dict) -> dict[str, Any]:
    response = requests.get(f"{served['mlserver']['url']}/tunekit/stats", timeout=10)
    assert response.status_code == 200, f"no runtime stats: {response.status_code} {response.text}"
    return response.json()


def test_mlserver_exports_the_kits_metrics_per_adapter(served: dict) -> None:
    """/tunekit/metrics on MLServer's REST port: the FastAPI server's names, so one rollout
    rule and one dashboard read both. A refused request is counted, not as a failure."""
    from tunekit.serving_metrics import WAITING, AdapterNumbers, read

    def scrape() -> dict:
        got = requests.get(f"{served['mlserver']['url']}/tunekit/metrics", timeout=10)
        assert got.status_code == 200 and WAITING in got.text, got.text[:300]
        return read(got.text)

    before = scrape()
    answered = [infer(served, v2_request(build_prompt(f"Which venue has week {i}?", GAME)))
                for i in range(3)]  # fmt: skip
    refused = infer(served, v2_prompts(["Which venue?", "Which week?"], shape=[1]))
    assert [r.status_code for r in answered] == [200] * 3 and refused.status_code == 400
    champion = scrape()["champion"].since(before.get("champion", AdapterNumbers()))
    assert (champion.requests, champion.failures) == (4, 0)
    assert champion.buckets[float("inf")] == 4 and champion.quantile(0.95) > 0


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (v2_prompts(["Which venue?"] * 9), 413,
         "the request carries 9 prompts; this server takes at most 8 (max_prompts)"),
        (v2_request(build_prompt("week " * 1100, GAME)), 422,
         "tokens; this server takes at most 1024 (max_prompt_tokens)"),
        (v2_request("x" * 300_000), 413,
         "bytes; this server takes at most 262144 (max_body_bytes)"),
        (v2_prompts(["Which venue?", "Which week?"], shape=[1]), 400,
         "shape [1] does not match its 2 prompts"),
    ],
    ids=["too many prompts", "a prompt too long", "a body too large", "a miscounted shape"],
)  # fmt: skip
def test_mlserver_caps_a_request_with_a_clear_4xx(served: dict, body: dict, status: int,
                                                  says: str) -> None:  # fmt: skip
    response = infer(served, body)
    assert response.status_code == status, response.text[:300]
    assert says in response.json()["error"]


def test_mlserver_a_refused_request_leaves_its_batch_alone(served: dict) -> None:
    """Requests are checked before MLServer's batcher merges them: one refused among seven
    good ones, sent together, fails alone."""
    bad = v2_prompts(["Which venue?", "Which week?"], shape=[1])
    bodies = [v2_request(build_prompt(f"Which venue has a week of {i}?", GAME)) for i in range(7)]
    with ThreadPoolExecutor(8) as pool:
        statuses = [r.status_code for r in pool.map(lambda b: infer(served, b), [*bodies, bad])]
    assert statuses == [200] * 7 + [400]


def test_mlserver_health_answers_while_batches_run(served: dict) -> None:
    """8 clients each send the largest request allowed (8 prompts) twice; meanwhile every
    health endpoint answers within a second (upstream's runtime runs the model on the
    event loop: the probes waited for each whole request)."""
    url, name = served["mlserver"]["url"], served["registry"]["registered_model_name"]
    body = v2_prompts([build_prompt(f"Which venue has a week of {i}?", GAME) for i in range(8)])
    paths = ["/v2/health/live", "/v2/health/ready", f"/v2/models/{name}/ready"]
    slowest = dict.fromkeys(paths, 0.0)
    with ThreadPoolExecutor(8) as pool:
        load = [pool.submit(infer, served, body) for _ in range(16)]
        while not all(f.done() for f in load):
            for path in slowest:
                start = time.perf_counter()
                assert requests.get(url + path, timeout=60).status_code == 200
                slowest[path] = max(slowest[path], time.perf_counter() - start)
            time.sleep(0.05)
    assert [f.result().status_code for f in load] == [200] * 16
    assert max(slowest.values()) < 1, f"slowest health answers (s): {slowest}"


def test_mlserver_batches_concurrent_requests_and_splits_answers_back(served: dict) -> None:
    """Requests sent together are generated in shared model calls (MLServer's adaptive batching),
    and each gets its own answer: the one it gets alone (greedy), in order."""
    prompts = [build_prompt(f"Which venue has a week of {i}?", GAME) for i in range(1, 9)]
    alone = [infer(served, v2_request(p)).json()["outputs"][0]["data"][0] for p in prompts]
    assert len(set(alone)) > 1  # distinct answers: a mix-up would show
    before = mlserver_stats(served)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda p: infer(served, v2_request(p)), prompts * 3))
    together = [r.json()["outputs"][0]["data"][0] for r in answers]
    after = mlserver_stats(served)
    assert together == alone * 3
    calls = after["model_calls"] - before["model_calls"]
    assert calls < 24 / 2, f"{calls} model calls for 24 concurrent requests: no batching"
    [output] = infer(served, v2_prompts(prompts[:3])).json()["outputs"]
    assert output["shape"][0] == 3 and output["data"] == alone[:3]


def test_mlserver_batches_requests_that_arrive_while_the_model_runs(served: dict) -> None:
    """Clients that do not send in step (8, started 30 ms apart, 6 requests each, back to
    back) still share model calls: what arrives while one runs joins the next."""
    prompts = [build_prompt(f"Which venue has a week of {i}?", GAME) for i in range(6)]

    def client(delay: float) -> list[int]:
        time.sleep(delay)
        return [infer(served, v2_request(p)).status_code for p in prompts]

    before = mlserver_stats(served)
    with ThreadPoolExecutor(8) as pool:
        statuses = [s for c in pool.map(client, [0.03 * i for i in range(8)]) for s in c]
    after = mlserver_stats(served)
    assert statuses == [200] * 48
    calls = after["model_calls"] - before["model_calls"]
    assert calls <= 48 / 3, f"{calls} model calls for 48 requests of 8 clients out of step"


def test_mlserver_runs_the_model_with_the_configured_torch_threads(served: dict) -> None:
    """The model's thread runs with the container's `torch_threads` (torch's default there is
    one per core, which in a thread of its own ran generate 2.5-3x slower on two cores)."""
    from tunekit.backends import containers

    wanted = containers.MLSERVER_LIMITS["torch_threads"]
    assert mlserver_stats(served)["torch_threads"] == wanted


def test_mlserver_does_not_serve_the_unchecked_mlflow_endpoint(served: dict) -> None:
    response = requests.post(f"{served['mlserver']['url']}/invocations",
                             json={"inputs": ["SELECT"]}, timeout=30)  # fmt: skip
    assert response.status_code == 404 and "/infer" in response.json()["error"]


def test_rerunning_the_stages_reuses_both_servers(served: dict) -> None:
    import tunekit

    run = tunekit.open_run(served["run_dir"])
    pids = {n: r["pid"] for n, r in running_services(run).items()}
    assert tunekit.deploy_simple(run)["fastapi"]["reused"] is True
    assert tunekit.deploy_kserve(run)["mlserver"]["reused"] is True
    assert {n: r["pid"] for n, r in running_services(run).items()} == pids


def test_06_compares_its_answer_with_05s(served: dict) -> None:
    import tunekit

    table = tunekit.compare_servers(tunekit.open_run(served["run_dir"]))
    assert list(table.server) == ["fastapi", "mlserver"]
    assert list(table.version) == ["1", "1"]
    assert table.sql[0] == table.sql[1] and table.sql[0]  # the same version, greedy


def test_pinning_a_run_in_04_keeps_the_fine_tune_of_03(served: dict) -> None:
    """Pinning is a registry setting: the next 03 reuses the finished fine-tune instead of
    training again (the job's name covers the training settings only)."""
    run_dir = served["run_dir"]
    before = recorded_run(run_dir).state.section("finetune")
    pinned = tunekit_cli("run", "--stages", "04", "--run-dir", str(run_dir),
                         "-p", f"pin_run_id={before['mlflow_run_id']}")  # fmt: skip
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    assert recorded_run(run_dir).state.section("registry")["pinned"] is True
    again = tunekit_cli("run", "--stages", "03", "--run-dir", str(run_dir))
    assert again.returncode == 0, again.stdout + again.stderr
    after = recorded_run(run_dir).state.section("finetune")
    assert after["reused"] is True
    assert (after["job"], after["mlflow_run_id"]) == (before["job"], before["mlflow_run_id"])


def test_a_worse_fine_tune_is_rolled_out_by_06_and_rolled_back(served: dict) -> None:
    """The series as a user runs it during a rollout: a second fine-tune (test-sized, so
    worse), registered by 04 as the challenger (pinned: whatever its score), served by 05
    beside the champion, rolled out by notebook 06 on the validation set asked through the
    live server: rolled back for its accuracy, drawn side by side, the champion left alone on
    both servers."""
    import tunekit

    from .conftest import TINY_FINETUNE

    run_dir = served["run_dir"]
    trained = tunekit_cli("run", "--stages", "03", "--run-dir", str(run_dir), *TINY_FINETUNE,
                          timeout=600)  # fmt: skip
    assert trained.returncode == 0, trained.stdout + trained.stderr
    worse = recorded_run(run_dir).state.section("finetune")["mlflow_run_id"]
    done = tunekit_cli("run", "--stages", "04-06", "--run-dir", str(run_dir),
                       "-p", f"pin_run_id={worse}", timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    state = recorded_run(run_dir).state
    rollout = state.section("rollout")
    assert rollout["verdict"] == "rolled back", rollout
    assert any(r.startswith("validation accuracy") for r in rollout["reasons"]), rollout
    assert rollout["aliases"] == {"champion": "1"} and rollout["challenger_version"] == 2
    assert rollout["numbers"]["challenger_requests"] >= 200  # the rule's minimum, by default
    assert state.section("registry")["challenger_version"] == ""
    # both servers on the champion alone again
    ready = requests.get(f"{state.section('serving')['fastapi']['url']}/readyz", timeout=10)
    assert ready.json()["adapters"] == {"champion": "1"}
    assert state.section("serving")["mlserver"]["model_version"] == "1"
    # notebook 06 drew it: the rollout cell has a figure
    notebook = json.loads((run_dir / "notebooks" / "06-deploy-kserve.ipynb").read_text())
    [cell] = [c for c in notebook["cells"] if "tunekit.rollout(run)" in "".join(c["source"])]
    assert any("image/png" in o.get("data", {}) for o in cell["outputs"]), cell["outputs"]
    assert tunekit.open_run(run_dir).settings.promotion == "rollout"  # the default did this


def test_down_stops_both_servers(served: dict, tmp_path: Path) -> None:
    run = recorded_run(served["run_dir"])
    assert {"fastapi", "mlserver"} <= set(running_services(run))
    done = tunekit_cli("down", "--run-dir", str(served["run_dir"]))
    assert done.returncode == 0
    assert not running_services(run) and not healthy(f"{served['url']}/healthz")
    assert not healthy(f"{served['mlserver']['url']}/v2/health/live")


def test_the_local_series_writes_what_the_records_declare(served: dict) -> None:
    """What stages 01-06 recorded, section by section, against `tunekit.records`."""
    from .test_records import check

    state = recorded_run(served["run_dir"]).state
    assert {"cluster", "mlflow", "finetune", "registry", "serving"} <= set(state.read())
    assert check(state) == []
