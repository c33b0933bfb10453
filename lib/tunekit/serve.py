"""`tunekit.serve`: the registered champion behind FastAPI, concurrent requests batched.

The model (`models:/<name>@champion` unless told otherwise) is loaded once, at start-up, in the
background: `/healthz` answers at once, `/readyz` once the model is loaded. Requests that arrive
while the model is busy wait in a queue and go into the next `generate` call together, so
throughput grows with concurrency instead of queueing one request per call.

Answers are SQL over the request's own tables (`tunekit.grammar`, as the logged model was
evaluated; `--free` turns it off): a question and its context, or a prompt in the kit's
template, are answered through the grammar their CREATE TABLE statements make, other prompts
freely. A context that is not CREATE TABLE statements is answered 422, naming the problem.

Usage (the container command on GKE, a managed local service in stage 05):
    python -m tunekit.serve --model-uri models:/gemma2-text-to-sql@champion --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field, model_validator

from tunekit.batching import Batcher, Job, Limits, OutOfMemory, QueueFull
from tunekit.body_limit import BodyLimit
from tunekit.grammar import ContextError, sql_grammar
from tunekit.inference import MIN_TEMPERATURE
from tunekit.prompts import build_prompt, parse_prompt
from tunekit.serving_metrics import UNROUTED, Measured, ServerMetrics
from tunekit.traffic import CHALLENGER, CHAMPION, PEFT_NAMES, Split, load_challenger

log = logging.getLogger("tunekit.serve")

MAX_PROMPT_CHARS = 4000
MAX_NEW_TOKENS = 256
DEFAULT_NEW_TOKENS = 96
MAX_BODY_BYTES = 64 * 1024  # two fields of 4000 characters, JSON-escaped, fit


class PredictRequest(BaseModel):
    """A question about tables (`question` and its CREATE TABLE `context`), or a raw `prompt`."""

    question: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    context: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    max_new_tokens: int = Field(DEFAULT_NEW_TOKENS, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(
        0.0, ge=0.0, le=2.0, description=f"0 (or below {MIN_TEMPERATURE}): greedy"
    )
    adapter: str | None = Field(
        None, description="`champion` or `challenger` during a rollout; none: the split decides"
    )

    model_config = {"extra": "forbid"}

    @model_validator(mode="after")
    def _one_input(self) -> PredictRequest:
        if self.prompt is not None:
            if self.question is not None or self.context is not None:
                raise ValueError("give either `prompt` or `question` and `context`, not both")
            if not self.prompt.strip():
                raise ValueError("`prompt` is empty")
        elif not (self.question and self.question.strip() and self.context
                  and self.context.strip()):  # fmt: skip
            raise ValueError("give `question` and `context` (both non-empty), or `prompt`")
        return self

    def text(self) -> str:
        if self.prompt is not None:
            return self.prompt
        return build_prompt(self.question or "", self.context or "")


class PredictResponse(BaseModel):
    sql: str
    model_version: str
    model_uri: str
    adapter: str = Field(description="the served model that answered (`champion`, `challenger`)")
    constrained: bool = Field(description="the answer was held to SQL over the given tables")


@dataclass(frozen=True)
class Decoding:
    """How the server answers: through each request's SQL grammar, or freely."""

    constrained: bool = True
    free_literals: bool = False

    def grammar(self, prompt: str) -> str | None:
        """The grammar of the answer to `prompt` (None: free); ContextError for a prompt whose
        context is not CREATE TABLE statements."""
        parts = parse_prompt(prompt) if self.constrained else None
        return sql_grammar(*parts, free_literals=self.free_literals) if parts else None


@dataclass
class Served:
    """What the server loaded: the components, the version they came from, the batcher."""

    model_uri: str
    version: str = ""
    versions: dict[str, str] = field(default_factory=dict)  # adapter -> registry version
    challenger_error: str = ""  # why a rollout's challenger is not served
    batcher: Batcher | None = None
    error: str = ""
    worker: asyncio.Task | None = None  # loads the model, then runs the batcher

    def waiting(self) -> int:
        """Requests queued for the next generate calls."""
        return len(self.batcher.pending) if self.batcher is not None else 0

    def live(self) -> str:
        """Why the server is not live ('' when it is): Kubernetes restarts it then."""
        if self.worker is not None and self.worker.done():
            return self.error or "the batcher has stopped"
        if self.batcher is not None and self.batcher.stalled():
            return f"a generate call has run over {self.batcher.limits.stall_s:.0f} s"
        return ""


Loader = Callable[[str], tuple[Any, Any, str]]


def adapter_name(model_uri: str) -> str:
    """What the metrics call the served model: its alias (`models:/NAME@champion`: champion),
    else its version (`models:/NAME/3`: v3), else `default`."""
    if "@" in model_uri:
        return model_uri.rsplit("@", 1)[1]
    tail = model_uri.rstrip("/").rsplit("/", 1)[-1]
    return f"v{tail}" if model_uri.startswith("models:/") and tail.isdigit() else "default"


def load_components(model_uri: str) -> tuple[Any, Any, str]:
    """Model, tokenizer and registry version of `model_uri` (an alias is resolved once): the
    logged pyfunc model's (`tunekit.pyfunc_model`), base and adapter."""
    import mlflow

    version, uri = "", model_uri
    if model_uri.startswith("models:/") and "@" in model_uri:
        name, alias = model_uri.removeprefix("models:/").split("@", 1)
        version = mlflow.MlflowClient().get_model_version_by_alias(name, alias).version
        uri = f"models:/{name}/{version}"  # what is served does not move with the alias
    logged = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    return logged.model, logged.tokenizer, version


def create_app(
    model_uri: str,
    limits: Limits | None = None,
    load: Loader = load_components,
    decoding: Decoding | None = None,
    challenger_uri: str | None = None,
    split: Split | None = None,
    add_challenger: Callable[[Any, str], str] = load_challenger,
) -> FastAPI:
    """The FastAPI app serving `model_uri` (`load` gives its model, tokenizer and version),
    answering as `decoding` says (default: constrained). With `challenger_uri`, a rollout:
    `add_challenger` loads the challenger's adapter beside the champion's, `split` shares the
    requests (`tunekit.traffic`)."""
    served, limits, decoding = Served(model_uri), limits or Limits(), decoding or Decoding()
    split = split or Split()

    async def start() -> None:
        try:
            model, tokenizer, served.version = await asyncio.to_thread(load, model_uri)
        except Exception as e:
            log.exception("could not load %s", model_uri)
            served.error = f"{type(e).__name__}: {e}"
            return
        served.versions = {adapter_name(model_uri): served.version}
        if challenger_uri:  # a challenger that does not load leaves the champion served alone
            try:
                won = await asyncio.to_thread(add_challenger, model, challenger_uri)
                served.versions = {CHAMPION: served.version, CHALLENGER: won}
            except Exception as e:
                log.exception("could not load the challenger %s", challenger_uri)
                served.challenger_error = f"{type(e).__name__}: {e}"
        served.batcher = Batcher(model, tokenizer, limits)
        log.info("serving %s", ", ".join(f"{a} (version {v or '-'})"
                                         for a, v in served.versions.items()))  # fmt: skip
        await served.batcher.run()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        served.worker = asyncio.create_task(start())
        yield
        served.worker.cancel()  # uvicorn has already let the requests in flight finish

    app = FastAPI(
        title="tunekit text-to-SQL",
        description="The registered champion: a LoRA-tuned Gemma-2 answering questions in SQL.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    metrics = ServerMetrics(served.waiting, model_uri)
    # outermost: a request refused by the body limit is counted too
    app.add_middleware(Measured, metrics=metrics, paths=("/predict",))
    app.state.served = served

    def batcher() -> Batcher:
        if reason := served.live():
            raise HTTPException(503, f"not serving: {reason}")
        if served.batcher is None:
            raise HTTPException(503, served.error or "the model is still loading; see /readyz")
        return served.batcher

    async def answer(
        request: Request, prompt: str, max_new_tokens: int, temperature: float, asked: str | None
    ) -> PredictResponse:
        queue = batcher()
        try:
            adapter = split.choose(asked, served.versions)
            grammar = decoding.grammar(prompt)
        except ContextError as e:
            raise HTTPException(422, f"context: {e}") from None
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        request.state.adapter = adapter  # the metrics' label (serving_metrics.Measured)
        tokens = queue.tokenizer.count(prompt)
        limit = getattr(queue.model.config, "max_position_embeddings", None)
        if limit and tokens + max_new_tokens > limit:
            raise HTTPException(
                422,
                f"the prompt is {tokens} tokens; with max_new_tokens={max_new_tokens} "
                f"that exceeds the model's {limit} positions",
            )
        try:
            peft_name = PEFT_NAMES[adapter] if len(served.versions) > 1 else None
            job = queue.submit(prompt, tokens, max_new_tokens, temperature, grammar, peft_name)
        except QueueFull as e:  # the server's queue, not the adapter's: counted apart
            request.state.adapter = UNROUTED
            raise HTTPException(
                429, f"the server is busy ({e}); retry later", headers={"Retry-After": "1"}
            ) from None
        sql = await _wait(request, job, limits.request_timeout_s)
        uri = challenger_uri if adapter == CHALLENGER and challenger_uri else model_uri
        return PredictResponse(sql=sql, model_version=served.versions[adapter], model_uri=uri,
                               adapter=adapter, constrained=grammar is not None)  # fmt: skip

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Live: the model loader or the batcher is running (the liveness probe)."""
        if reason := served.live():
            raise HTTPException(503, reason)
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, Any]:
        """Ready: the model is loaded and the batcher runs."""
        queue = batcher()
        return {
            "status": "ready",
            "model_uri": model_uri,
            "model_version": served.version,
            "adapters": served.versions,
            **({"challenger_error": served.challenger_error} if served.challenger_error else {}),
            "requests": queue.requests,
            "generate_calls": queue.batches,
            "generating": queue.busy_since is not None,
            "waiting": len(queue.pending),
            "refused": queue.refused,
            "dropped": queue.dropped,
        }

    @app.get("/metrics", include_in_schema=False)
    def metrics_text() -> Response:
        """Requests, failures and latency by adapter, and the queue (Prometheus text format)."""
        return Response(metrics.exposition(), media_type=Measured.content_type)

    @app.get("/predict", response_model=PredictResponse)
    async def predict_get(
        request: Request,
        message: Annotated[str, Query(min_length=1, max_length=MAX_PROMPT_CHARS)],
        max_new_tokens: Annotated[int, Query(ge=1, le=MAX_NEW_TOKENS)] = DEFAULT_NEW_TOKENS,
        adapter: str | None = None,
    ) -> PredictResponse:
        """The tutorial's contract: `message` is the whole prompt."""
        if not message.strip():
            raise HTTPException(422, "`message` is empty")
        return await answer(request, message, max_new_tokens, 0.0, adapter)

    @app.post("/predict", response_model=PredictResponse)
    async def predict_post(request: Request, body: PredictRequest) -> PredictResponse:
        """A question and its CREATE TABLE context (or a raw prompt): the SQL that answers it."""
        return await answer(
            request, body.text(), body.max_new_tokens, body.temperature, body.adapter
        )

    return app


async def _wait(request: Request, job: Job, timeout_s: float) -> str:
    """The job's text; 503 past `timeout_s`; the job dropped if the client goes away."""
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait([job.done, gone], timeout=timeout_s, return_when="FIRST_COMPLETED")
    finally:
        gone.cancel()
    if not job.done.done():
        job.done.cancel()  # the batcher drops it
        if gone.done() and not gone.cancelled():
            raise HTTPException(499, "the client closed the connection")
        raise HTTPException(
            503,
            f"not answered within {timeout_s:.0f} s (the server is busy); retry later",
            headers={"Retry-After": "5"},
        )
    try:
        return job.done.result()
    except OutOfMemory as e:
        raise HTTPException(503, str(e)) from None
    except Exception as e:
        raise HTTPException(500, f"generation failed: {type(e).__name__}: {e}") from None


async def _disconnected(request: Request) -> None:
    """Returns when the client has closed the connection (the ASGI server says so)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Limits]:
    """The command line, and the server's limits from it (`decoding(args)`: how it answers)."""
    parser = argparse.ArgumentParser(
        prog="python -m tunekit.serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model-uri", required=True, help="e.g. models:/NAME@champion")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--free", action="store_true", help="answer freely, not through each request's SQL grammar"
    )
    parser.add_argument("--challenger-uri", help="a rollout: e.g. models:/NAME@challenger, "
                        "served beside the champion (one base model, two adapters)")  # fmt: skip
    parser.add_argument("--challenger-share", type=float, default=0.1,
                        help="of requests naming no adapter (default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--free-literals",
        action="store_true",
        help="constrained answers may compare with any value, not only the question's words",
    )
    for limit in fields(Limits):  # --max-batch, --max-queue, --request-timeout-s, ...
        parser.add_argument(
            f"--{limit.name.replace('_', '-')}", default=limit.default,
            type={"int": int, "float": float}[str(limit.type)],
            help=LIMIT_HELP[limit.name] + " (default: %(default)s)",
        )  # fmt: skip
    args = parser.parse_args(argv)
    return args, Limits(**{f.name: getattr(args, f.name) for f in fields(Limits)})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args, limits = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(
            args.model_uri,
            limits,
            decoding=Decoding(not args.free, args.free_literals),
            challenger_uri=args.challenger_uri,
            split=Split(args.challenger_share),
        ),
        host=args.host,
        port=args.port,
        timeout_graceful_shutdown=30,
    )


LIMIT_HELP = {
    "max_batch": "requests in one generate call",
    "batch_wait_ms": "how long a call waits for more requests to join",
    "max_queue": "waiting requests; one more gets 429 with Retry-After",
    "token_budget": "padded tokens (prompt + new) in one generate call",
    "request_timeout_s": "a request not answered by then gets 503 with Retry-After",
    "stall_s": "a generate call running longer fails /healthz (Kubernetes restarts the pod)",
    "starvation_s": "a request waiting longer goes into the next call, whatever its size",
}


if __name__ == "__main__":
    main()
