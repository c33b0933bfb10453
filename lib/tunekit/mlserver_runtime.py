"""Stage 06's MLServer runtime: MLServer's MLflow runtime, with each request capped, the model
run off the event loop, and MLServer's adaptive batches generated as batches.

The model is the kit's logged pyfunc (`tunekit.pyfunc_model`, its modules shipped with it): it
answers each prompt through the SQL grammar of its tables. A request carries prompts (one
input, as the tutorial's input.json), or questions and their contexts row by row (two inputs,
`question` and `context`: per-row data, which MLServer's batcher keeps, unlike request
parameters: SeldonIO/MLServer#1541); a context that is not CREATE TABLE statements is a 422.

It runs inside MLServer's environment (.venv-mlserver, the KServe image), which has mlserver,
mlserver-mlflow and the model's packages but not the kit: it imports nothing from `tunekit`
and is imported as `tunekit.mlserver_runtime` from a folder holding this file alone (the image's
/opt/tunekit, the run's mlserver/python; `tunekit` is then a namespace package there).

    MLSERVER_MODEL_IMPLEMENTATION=tunekit.mlserver_runtime.TunekitMLflowRuntime
    MLSERVER_MODEL_EXTRA='{"max_body_bytes": 262144, "max_prompts": 8, "max_prompt_tokens": 1024,
                          "torch_threads": 1}'
    MLSERVER_MODEL_MAX_BATCH_SIZE=8 MLSERVER_MODEL_MAX_BATCH_TIME=0.01  # MLServer's batcher
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

import mlflow
from mlserver.batching import BatchedRequests
from mlserver.errors import MLServerError
from mlserver.handlers import custom_handler
from mlserver.logging import logger
from mlserver.types import Datatype, InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri
from mlserver_mlflow import MLflowRuntime
from mlserver_mlflow.codecs import TensorDictCodec
from starlette.responses import Response

# shipped beside this module (tunekit.backends.containers.MLSERVER_RUNTIME_MODULES)
from tunekit.serving_metrics import SERVED_ALIAS, Measured, ServerMetrics

PROMPT = "prompt"  # the one input's name once checked (the tutorial's input.json calls it `args`)


@dataclass(frozen=True)
class Limits:
    """What one request may carry, and the model thread's torch threads (`parameters.extra` of
    the model settings, i.e. MLSERVER_MODEL_EXTRA)."""

    max_body_bytes: int = 262_144  # the HTTP body (Content-Length), or the prompts' UTF-8 bytes
    max_prompts: int = 8  # prompts in one request
    max_prompt_tokens: int = 1024  # tokens of one prompt (the served model's tokenizer)
    # torch's intra-op threads for the model's thread. On two cores, two of them in a thread
    # that is not the process's main one ran generate 2.5-3x slower than one (measured with
    # torch 2.13 on CPU; in the main thread the two were about even): 1, unless measured
    torch_threads: int = 1

    @classmethod
    def from_extra(cls, extra: dict[str, Any] | None) -> Limits:
        """The limits `extra` names (the others keep their defaults); a name or a value it does
        not know is an error that names it."""
        extra = dict(extra or {})
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(extra) - known):
            raise ValueError(f"unknown limits {unknown} in the model's parameters.extra "
                             f"(MLSERVER_MODEL_EXTRA); known: {sorted(known)}")  # fmt: skip
        for name, value in extra.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"limit {name} must be a whole number >= 1, got {value!r}")
        return cls(**extra)


class RequestRejected(MLServerError):
    """A request the server will not run: MLServer answers `status_code` with
    {"error": message} (mlserver/rest/errors.py `handle_mlserver_error`)."""


def check_request(
    payload: InferenceRequest,
    limits: Limits,
    count_tokens: Callable[[str], int],
    max_tokens: int | None = None,
    compose: Callable[[str, str], str] | None = None,
    problem: Callable[[str], str] | None = None,
) -> InferenceRequest:
    """`payload` if the server may run it, its prompts as one input named `prompt`, shaped [n]
    and decoded by the model's content type (inputs `question` and `context` become prompts
    through `compose`): 400 for a request that is not prompts, 413 for one over the size or
    prompt limit, 422 for a prompt over `max_prompt_tokens` or the model's own `max_tokens` (its
    positions less the tokens it generates) and for one that `problem` finds fault with (its
    context is not tables). Checked per request, before MLServer's batcher merges requests: a
    request refused does not fail the others of its batch."""
    headers = (payload.parameters.headers if payload.parameters else None) or {}
    declared = int(headers.get("content-length") or 0)
    if declared > limits.max_body_bytes:
        raise _too_large(f"the request body is {declared} bytes", limits, "max_body_bytes")
    names = sorted(i.name for i in payload.inputs)
    if compose is not None and names == ["context", "question"]:
        _compose(payload, compose)
    if len(payload.inputs) != 1:
        raise RequestRejected(f"give one input of prompts (BYTES, shape [n]), or two, "
                              f"`question` and `context`, not {len(payload.inputs)} inputs "
                              f"{names}")  # fmt: skip
    [given] = payload.inputs
    data = given.data.root
    # MLServer's types keep enum values (mlserver/types/base.py `use_enum_values=True`)
    if given.datatype != Datatype.BYTES.value or not isinstance(data, list):
        raise RequestRejected(f"input {given.name!r} must be BYTES with a list of prompts as "
                              f"data, got {given.datatype} {type(data).__name__}")  # fmt: skip
    prompts = [p.decode() if isinstance(p, bytes) else p for p in data]
    if not all(isinstance(p, str) for p in prompts):
        raise RequestRejected(f"input {given.name!r}: each prompt must be a string")
    # MLServer's batcher splits the answers back by shape[0] (mlserver/batching/requests.py
    # `BatchedRequests._split_data`): a shape that miscounts the data would hand this
    # request's answers to its neighbours in the batch
    if given.shape not in ([len(prompts)], [len(prompts), 1]):
        raise RequestRejected(f"input {given.name!r}: shape {given.shape} does not match its "
                              f"{len(prompts)} prompts (give [{len(prompts)}])")  # fmt: skip
    if not prompts:
        raise RequestRejected(f"input {given.name!r} has no prompts")
    if len(prompts) > limits.max_prompts:
        raise _too_large(
            f"the request carries {len(prompts)} prompts",
            limits,
            "max_prompts",
            "per request: send the rest as more requests (they are batched)",
        )
    size = sum(len(p.encode()) for p in prompts)
    if size > limits.max_body_bytes:
        raise _too_large(f"the prompts are {size} bytes", limits, "max_body_bytes")
    for i, prompt in enumerate(prompts):
        if not prompt.strip():
            raise RequestRejected(f"prompt {i} is empty")
        tokens = count_tokens(prompt)
        if tokens > limits.max_prompt_tokens:
            raise RequestRejected(
                f"prompt {i} is {tokens} tokens; this server takes at most "
                f"{limits.max_prompt_tokens} (max_prompt_tokens)",
                422,
            )
        if max_tokens is not None and tokens > max_tokens:
            raise RequestRejected(
                f"prompt {i} is {tokens} tokens; with the answer it generates that exceeds "
                f"the model's positions (at most {max_tokens} prompt tokens)",
                422,
            )
        if problem is not None and (why := problem(prompt)):
            raise RequestRejected(f"prompt {i}: {why}", 422)
    given.name, given.shape, given.data.root = PROMPT, [len(prompts)], prompts
    # every request decodes the same way, by the model's content type: in a merged batch one
    # request's content type would decide for all (mlserver/batching/requests.py: the last wins)
    given.parameters = None
    if payload.parameters:
        payload.parameters.content_type = None
    return payload


def _compose(payload: InferenceRequest, compose: Callable[[str, str], str]) -> None:
    """Inputs `question` and `context`, row by row, made one input of prompts (in place)."""
    by_name = {i.name: i for i in payload.inputs}
    columns = []
    for name in ("question", "context"):
        given = by_name[name]
        data = given.data.root
        if given.datatype != Datatype.BYTES.value or not isinstance(data, list):
            raise RequestRejected(f"input {name!r} must be BYTES with a list of strings")
        values = [v.decode() if isinstance(v, bytes) else v for v in data]
        if not all(isinstance(v, str) for v in values):
            raise RequestRejected(f"input {name!r}: each row must be a string")
        columns.append(values)
    questions, contexts = columns
    if len(questions) != len(contexts):
        raise RequestRejected(f"{len(questions)} questions for {len(contexts)} contexts: give "
                              "one context per question")  # fmt: skip
    empty = [i for i, (q, c) in enumerate(zip(questions, contexts, strict=True))
             if not q.strip() or not c.strip()]  # fmt: skip
    if empty:
        raise RequestRejected(f"row {empty[0]} has an empty question or context")
    given = by_name["question"]
    given.data.root = [compose(q, c) for q, c in zip(questions, contexts, strict=True)]
    given.shape = [len(questions)]
    payload.inputs = [given]


def _too_large(what: str, limits: Limits, limit: str, advice: str = "") -> RequestRejected:
    most = getattr(limits, limit)
    return RequestRejected(f"{what}; this server takes at most {most} ({limit})"
                           + (f" {advice}" if advice else ""), 413)  # fmt: skip


class TunekitMLflowRuntime(MLflowRuntime):
    """`mlserver_mlflow.MLflowRuntime` for the logged text-generation model, made safe to serve:

    - each request is checked (`check_request`) before MLServer's adaptive batcher takes it;
    - loading and predicting run in threads, so the event loop keeps answering
      /v2/health/live, /v2/health/ready and /v2/models/<name>/ready (upstream runs
      `pyfunc.predict` on the loop: mlserver_mlflow/runtime.py `MLflowRuntime.predict`);
    - one thread runs the model, one call at a time, on all that waits for it (`predict`), in
      `generate` calls of up to `max_batch_size` prompts (the pipeline pads on the left);
    - GET /tunekit/stats counts requests, refusals, model calls, prompts and the seconds the
      model ran (MLServer's metrics port shows no runtime metric when parallel_workers is 0:
      mlserver/metrics/prometheus.py);
    - GET /tunekit/metrics has the FastAPI server's metrics, in its names
      (`tunekit.serving_metrics`): requests by adapter and status, latency, the queue. The
      adapter is the alias this server serves (`TUNEKIT_SERVED_ALIAS`: a KServe canary serves
      the challenger).

    The server must keep MLSERVER_PARALLEL_WORKERS=0: with workers, each worker process loads
    its own copy of the model and runs this class after the batcher (mlserver/parallel).
    """

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._stats: dict[str, float] = dict.fromkeys(
            ("requests", "refused", "model_calls", "prompts", "model_seconds"), 0
        )
        self._waiting: deque[tuple[InferenceRequest, asyncio.Future]] = deque()
        self._caller: asyncio.Task | None = None
        self._metrics = ServerMetrics(lambda: len(self._waiting), settings.name)
        self._alias = os.environ.get(SERVED_ALIAS) or "champion"  # tunekit.traffic.CHAMPION

    async def load(self) -> bool:
        parameters = self._settings.parameters
        self.limits = Limits.from_extra(parameters.extra if parameters else None)
        import torch  # the model's own dependency, in MLServer's environment

        self._runner = ThreadPoolExecutor(
            1,
            thread_name_prefix="tunekit-predict",
            initializer=torch.set_num_threads,
            initargs=(self.limits.torch_threads,),
        )
        self._threads = self._runner.submit(torch.get_num_threads)  # as the model's thread sees
        # upstream `MLflowRuntime.load`, with the (long) load off the event loop
        model_uri = await get_model_uri(self._settings)
        self._model = await asyncio.to_thread(mlflow.pyfunc.load_model, model_uri)
        self._input_schema = self._model.metadata.get_input_schema()
        self._signature = self._model.metadata.signature
        self._sync_metadata()
        self._logged = self._model.unwrap_python_model()  # tunekit.pyfunc_model.TextToSQL
        # a tokenizer of its own for the checks on the event loop: the model's is in use in
        # the model's thread, and a Rust tokenizer used by two threads at once raises
        # "Already borrowed"
        self._tokenizer = copy.deepcopy(self._logged.tokenizer)
        positions = self._logged.positions
        self._max_tokens = positions - self._logged.max_new_tokens if positions else None
        # a merged batch is one generate call (up to the model's batch size)
        self._per_call = max(1, self._settings.max_batch_size, self.limits.max_prompts)
        self._logged.batch_size = self._per_call
        # MLServer's `load_batching` hook ran before `load` (mlserver/registry.py `_load_model`)
        # and made `predict` its batcher's entry (mlserver/batching/hooks.py): the checks go in
        # front of it, so they see each request as its client sent it
        self.predict = self._checked(self.predict)  # type: ignore[method-assign,assignment]
        logger.info(f"Serving with {self.limits}, batches of up to {self._settings.max_batch_size} "
                    f"requests within {self._settings.max_batch_time}s")  # fmt: skip
        return True

    def _checked(
        self, entry: Callable[[InferenceRequest], Awaitable[InferenceResponse]]
    ) -> Callable[[InferenceRequest], Awaitable[InferenceResponse]]:
        async def predict(payload: InferenceRequest) -> InferenceResponse:
            started, code = time.monotonic(), 500  # an answer never made: the server failed
            try:
                check_request(payload, self.limits, self._count_tokens, self._max_tokens,
                              self._logged.prompt, self._logged.check)  # fmt: skip
                self._stats["requests"] += 1
                answer = await entry(payload)
                code = 200
                return answer
            except RequestRejected as e:
                self._stats["refused"] += 1
                code = e.status_code
                raise
            finally:
                self._metrics.observe(self._alias, code, time.monotonic() - started)

        return predict

    def _count_tokens(self, prompt: str) -> int:
        return len(self._tokenizer(prompt)["input_ids"])

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """The answers to a (merged) request: it joins the next model call.

        MLServer's batcher merges what arrives within `max_batch_time` and hands each batch
        over at once, also while the model runs one (mlserver/batching/adaptive.py
        `_batcher`); clients out of step would then wait in line in batches of one or two.
        Here whatever waits when the model's thread is free goes into one call, up to the
        pipeline's batch size in prompts, merged and split back by MLServer's own
        `BatchedRequests`."""
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append((payload, answer))
        if self._caller is None or self._caller.done():
            self._caller = asyncio.create_task(self._call_model())
        return await answer

    async def _call_model(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch = [self._waiting.popleft()]
            prompts = batch[0][0].inputs[0].shape[0]
            while self._waiting and (
                prompts + (more := self._waiting[0][0].inputs[0].shape[0]) <= self._per_call
            ):
                batch.append(self._waiting.popleft())
                prompts += more
            merged = BatchedRequests({str(i): request for i, (request, _) in enumerate(batch)})
            self._stats["model_calls"] += 1
            self._stats["prompts"] += prompts
            context = contextvars.copy_context()  # MLServer's model context, for its codecs
            try:
                response = await loop.run_in_executor(
                    self._runner, context.run, self._timed, merged.merged_request
                )
                answers = merged.split_response(response)
            except Exception as e:  # the batch's requests fail together, as in MLServer's
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(e)
                continue
            for i, (_, answer) in enumerate(batch):
                if not answer.done():
                    answer.set_result(answers[str(i)])

    def _timed(self, payload: InferenceRequest) -> InferenceResponse:
        start = time.perf_counter()
        try:
            return self._predict(payload)
        finally:  # the model's thread alone writes this one
            self._stats["model_seconds"] += time.perf_counter() - start

    def _predict(self, payload: InferenceRequest) -> InferenceResponse:
        # upstream `MLflowRuntime.predict`, synchronous. Request parameters reach the pyfunc,
        # which ignores them (the signature has no params schema: mlflow/models/utils.py
        # `_enforce_params_schema`): every prompt generates with the logged inference config,
        # also in a batch merged from requests with different parameters, where the last
        # request's would win (mlserver/batching/requests.py `_merge_parameters`)
        decoded = self.decode_request(payload)
        params = payload.parameters.model_extra if payload.parameters else None
        output = self._model.predict(decoded, params=params or None)
        return self.encode_response(output, default_codec=TensorDictCodec)

    @custom_handler(rest_path="/tunekit/metrics", rest_method="GET")
    async def metrics(self) -> Response:
        """Requests, failures, latency and the queue, in Prometheus text format."""
        return Response(self._metrics.exposition(), media_type=Measured.content_type)

    @custom_handler(rest_path="/tunekit/stats", rest_method="GET")
    async def stats(self) -> dict[str, Any]:
        """What the runtime has done since it loaded, and its settings."""
        batching = {"max_batch_size": self._settings.max_batch_size,
                    "max_batch_time": self._settings.max_batch_time}  # fmt: skip
        threads = {"torch_threads": self._threads.result()}  # read in the model's thread
        return {**self._stats, "limits": vars(self.limits), **batching, **threads}

    @custom_handler(rest_path="/invocations")
    async def invocations(self) -> None:
        """Upstream's MLflow scoring endpoint would run the model on the event loop and
        unchecked (mlserver_mlflow/runtime.py `invocations`): not served."""
        raise MLServerError(f"POST /invocations is not served: use POST "
                            f"/v2/models/{self.name}/infer (Open Inference V2)", 404)  # fmt: skip

    async def unload(self) -> bool:
        self._runner.shutdown(wait=False, cancel_futures=True)
        return await super().unload()
