"""`tunekit.serve` under load, faults and hostile input, over real HTTP.

The server runs in this process (uvicorn in a thread) on a real Gemma-2 with a real tokenizer:
tiny-gemma2 as the kit builds it, without its pretraining (random weights are enough to batch,
pad and sample), loaded directly instead of from the registry (test_serve covers that path).
Its EOS logit is zero, so a greedy answer always runs to its `max_new_tokens`: lengths, and so
the order in which requests finish, are known.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import torch
import uvicorn

from tunekit.batching import Job, Limits
from tunekit.inference import LockedTokenizer, encode_batch
from tunekit.models import TinyRecipe, build_tiny_gemma2
from tunekit.prompts import build_prompt
from tunekit.serve import create_app, parse_args
from tunekit.synthetic import generate as synthetic_rows

PROMPT = build_prompt("How many games had a week of 3?", "CREATE TABLE game (venue TEXT, week INT)")


@pytest.fixture(scope="module")
def components(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_tiny_gemma2(
        synthetic_rows(200, seed=0), tmp_path_factory.mktemp("models"), seed=0,
        recipe=TinyRecipe(pretrain_steps=0),
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id] = 0  # never the argmax: no early end
    return model, tokenizer


class Server:
    """`create_app` served by uvicorn on a free port, in a thread of this process."""

    def __init__(self, app: Any):
        self.app = app
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise TimeoutError("the test server did not get ready")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def served(self) -> Any:
        return self.app.state.served

    def in_loop(self, call: Any) -> None:
        """Run `call()` on the server's event loop (where the batcher lives)."""
        done = threading.Event()

        def run() -> None:
            call()
            done.set()

        self.served.worker.get_loop().call_soon_threadsafe(run)
        assert done.wait(10)

    def ready(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/readyz", timeout=5).json()

    def wait_generating(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready()["generating"]:
            assert time.monotonic() < deadline, "the server never started generating"
            time.sleep(0.01)

    def settled(self, timeout: float = 60) -> dict[str, Any]:
        """/readyz once no request waits any more (dropped ones are counted by then)."""
        deadline = time.monotonic() + timeout
        while (ready := self.ready())["waiting"] and time.monotonic() < deadline:
            time.sleep(0.1)
        return ready


def serving(components: tuple[Any, Any], **limits: Any) -> Server:
    model, tokenizer = components
    return Server(
        create_app("models:/tiny@test", Limits(**limits), lambda _: (model, tokenizer, "7"))
    )


def post(url: str, timeout: float = 120, **body: Any) -> requests.Response:
    return requests.post(f"{url}/predict", json={"prompt": PROMPT, **body}, timeout=timeout)


def timed_post(url: str, **body: Any) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = post(url, **body)
    return response, time.monotonic() - started


def concurrently(calls: list[Any], server: Server | None = None) -> list[Any]:
    """Run `calls` at once, in this order into the queue; with `server`, the first one is being
    generated before the others are sent (it holds the batcher while they queue)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(calls[0])]
        if server is not None:
            server.wait_generating()
        for call in calls[1:]:
            futures.append(pool.submit(call))
            time.sleep(0.02)
        return [f.result() for f in futures]


# 1. The tokenizer, used from the event loop and from the generate thread


def test_the_tokenizer_is_safe_from_two_threads(components: tuple[Any, Any]) -> None:
    """The length check (event loop) and generate's padded batch encoding (worker thread) on one
    fast tokenizer: without a lock, one call's padding leaks into the other's within a few
    hundred rounds ("Unable to create tensor ...", or the Rust backend's "Already borrowed")."""
    _, raw = components
    tokenizer = LockedTokenizer(raw)
    prompts = [PROMPT * (i % 4 + 1) for i in range(8)]
    errors: list[BaseException] = []
    finished = threading.Event()

    def check_lengths() -> None:
        while not finished.is_set():
            try:
                assert tokenizer.count(prompts[5]) > 0
            except BaseException as e:  # any error is the finding
                errors.append(e)
                return

    checker = threading.Thread(target=check_lengths)
    checker.start()
    try:
        for _ in range(5000):
            assert encode_batch(tokenizer, prompts)["input_ids"].shape[0] == 8
            if errors:
                break
    finally:
        finished.set()
        checker.join()
    assert not errors, errors[0]


# 2. Backpressure


def test_a_full_queue_is_429_with_retry_after(components: tuple[Any, Any]) -> None:
    with serving(components, max_queue=3, max_batch=1) as server:
        responses = concurrently([lambda: post(server.url, max_new_tokens=48)] * 12, server)
        statuses = sorted(r.status_code for r in responses)
        refused = [r for r in responses if r.status_code == 429]
        assert set(statuses) == {200, 429}, statuses
        assert all(r.headers["Retry-After"] == "1" for r in refused)
        assert "busy" in refused[0].json()["detail"]
        assert server.ready()["refused"] == len(refused)


def test_a_request_past_its_deadline_is_503_and_never_generated(components: tuple[Any, Any]):
    with serving(components, request_timeout_s=1.0) as server:
        slow, late = concurrently([
            lambda: post(server.url, max_new_tokens=256),
            lambda: post(server.url, max_new_tokens=8, temperature=0.5),
        ], server)  # fmt: skip
        assert slow.status_code == 503 and late.status_code == 503  # the slow one took > 1 s too
        assert "not answered within 1 s" in late.json()["detail"]
        assert late.headers["Retry-After"]
        ready = server.settled()
        assert ready["dropped"] == 1 and ready["generate_calls"] == 1  # `late` never ran


def test_a_request_whose_client_left_is_dropped(components: tuple[Any, Any]) -> None:
    with serving(components) as server:

        def impatient() -> str:
            try:
                post(server.url, timeout=0.3, max_new_tokens=8)
            except requests.Timeout:
                return "left"
            return "answered"

        slow = [lambda: post(server.url, max_new_tokens=256)]
        results = concurrently([*slow, *[impatient] * 4], server)
        assert results[0].status_code == 200 and results[1:] == ["left"] * 4
        ready = server.settled()
        assert ready["dropped"] == 4 and ready["generate_calls"] == 1, ready


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_cap_is_413_unread(components: tuple[Any, Any], chunked: bool) -> None:
    body = b'{"prompt": "' + b"x" * 2_000_000 + b'"}'
    data: Any = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    with serving(components) as server:
        response = requests.post(
            f"{server.url}/predict", data=data, timeout=30,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert response.status_code == 413, response.text
        assert "over 65536 bytes" in response.json()["detail"]
        assert post(server.url, max_new_tokens=2).status_code == 200  # and it still serves


# 3. Fair batches


def test_distinct_temperatures_share_one_generate_call(components: tuple[Any, Any]) -> None:
    with serving(components) as server:
        responses = concurrently(
            [lambda: post(server.url, max_new_tokens=200)]  # holds the batcher meanwhile
            + [
                lambda t=t: post(server.url, max_new_tokens=16, temperature=t)
                for t in (0.0, 0.3, 0.7, 1.2, 0.0, 0.3)
            ],
            server,
        )
        assert [r.status_code for r in responses] == [200] * 7
        assert server.ready()["generate_calls"] == 2
        # a greedy answer is the same in a sampled batch as alone
        alone = post(server.url, max_new_tokens=16).json()["sql"]
        assert responses[1].json()["sql"] == responses[5].json()["sql"] == alone


def test_short_requests_do_not_wait_for_a_long_ones_tokens(components: tuple[Any, Any]) -> None:
    """Queued behind a running call, one request for 256 new tokens and eight for 8: the eight
    go first in a call of their own (they used to ride in the long one's call to its end)."""
    with serving(components, starvation_s=60) as server:
        results = concurrently(
            [lambda: timed_post(server.url, max_new_tokens=16)]
            + [lambda: timed_post(server.url, max_new_tokens=256)]
            + [lambda: timed_post(server.url, max_new_tokens=8)] * 8,
            server,
        )
        assert all(r.status_code == 200 for r, _ in results)
        long, shorts = results[1][1], [seconds for _, seconds in results[2:]]
        assert max(shorts) < 0.6 * long, (shorts, long)
        assert len(results[2][0].json()["sql"].split()) <= 8


def test_next_batch_takes_the_smallest_class_and_the_oldest_after_a_while() -> None:
    from tunekit.batching import Batcher

    async def plan() -> tuple[list[int], list[int], list[int]]:
        batcher = Batcher(None, None, Limits(max_batch=3, token_budget=10_000, starvation_s=60))
        for new in (256, 8, 9, 200, 12, 15, 8):
            batcher.submit("p", 10, new, 0.0)
        first = [j.max_new_tokens for j in batcher.next_batch()]
        second = [j.max_new_tokens for j in batcher.next_batch()]
        aged = Batcher(None, None, Limits(starvation_s=0))
        for new in (256, 8):
            aged.submit("p", 10, new, 0.0)
        return first, second, [j.max_new_tokens for j in aged.next_batch()]

    first, second, aged = asyncio.run(plan())
    assert first == [8, 9, 12] and second == [15, 8] and aged == [256]


def test_the_token_budget_splits_long_prompts_from_short_ones() -> None:
    from tunekit.batching import Batcher

    async def plan() -> list[list[int]]:
        batcher = Batcher(None, None, Limits(token_budget=2000))
        for tokens in (400, 20, 20, 20, 1500):
            batcher.submit("p", tokens, 32, 0.0)
        return [[j.prompt_tokens for j in batcher.next_batch()] for _ in range(3)]

    assert asyncio.run(plan()) == [[400, 20, 20, 20], [1500], []]


class MemoryBound:
    """A stand-in for a GPU that has room for two rows: generate on more raises CUDA's error
    (this machine has no GPU to run out of). Everything else is the real model."""

    def __init__(self, model: Any):
        self.model = model

    def generate(self, **kwargs: Any) -> Any:
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model.generate(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def test_out_of_memory_splits_the_batch(components: tuple[Any, Any]) -> None:
    model, tokenizer = components
    app = create_app("models:/tiny@test", load=lambda _: (MemoryBound(model), tokenizer, "7"))
    with Server(app) as server:
        responses = concurrently([lambda: post(server.url, max_new_tokens=8)] * 8)
        assert [r.status_code for r in responses] == [200] * 8
        assert len({r.json()["sql"] for r in responses}) == 1


# 4. Liveness


def test_healthz_and_readyz_fail_when_the_batcher_stops(components: tuple[Any, Any]) -> None:
    with serving(components) as server:
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
        server.in_loop(lambda: server.served.worker.cancel())
        time.sleep(0.2)
        health = requests.get(f"{server.url}/healthz", timeout=5)
        assert health.status_code == 503 and "stopped" in health.json()["detail"]
        assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 503
        assert post(server.url, max_new_tokens=2).status_code == 503


def test_healthz_fails_while_a_generate_call_stalls(components: tuple[Any, Any]) -> None:
    with serving(components, stall_s=0.3) as server:
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(post, server.url, max_new_tokens=256)
            time.sleep(0.8)
            health = requests.get(f"{server.url}/healthz", timeout=5)
            assert health.status_code == 503 and "over 0 s" in health.json()["detail"]
            assert slow.result().status_code == 200
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200


# 5. Edge values


@pytest.mark.parametrize("temperature", [1e-45, 5e-324, 0.009])
def test_a_vanishing_temperature_is_greedy(components: tuple[Any, Any], temperature: float):
    with serving(components) as server:
        tiny = post(server.url, max_new_tokens=12, temperature=temperature)
        assert tiny.status_code == 200, tiny.text
        assert tiny.json()["sql"] == post(server.url, max_new_tokens=12).json()["sql"]


def test_job_size_classes() -> None:
    async def classes() -> list[int]:
        return [Job("p", 1, n, 0.0).size_class for n in (1, 8, 15, 16, 32, 63, 64, 256)]

    assert asyncio.run(classes()) == [1, 4, 4, 5, 6, 6, 7, 9]


def test_every_limit_is_a_command_line_flag() -> None:
    args, limits = parse_args(["--model-uri", "models:/m@champion", "--max-queue", "9",
                               "--request-timeout-s", "2.5", "--starvation-s", "0"])  # fmt: skip
    assert limits == Limits(max_queue=9, request_timeout_s=2.5, starvation_s=0.0)
    assert args.model_uri == "models:/m@champion"
