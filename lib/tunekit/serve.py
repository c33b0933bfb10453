"""`tunekit.serve`: the registered champion behind FastAPI, concurrent requests batched.

The model (`models:/<name>@champion` unless told otherwise) is loaded once, at start-up, in the
background: `/healthz` answers at once, `/readyz` once the model is loaded. Requests that arrive
while the model is busy wait in a queue and go into the next `generate` call together, so
throughput grows with concurrency instead of queueing one request per call.

Usage (the container command on GKE, a managed local service in stage 05):
    python -m tunekit.serve --model-uri models:/gemma2-text-to-sql@champion --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field, model_validator

from tunekit.inference import generate
from tunekit.prompts import build_prompt

log = logging.getLogger("tunekit.serve")

MAX_PROMPT_CHARS = 4000
MAX_NEW_TOKENS = 256
DEFAULT_NEW_TOKENS = 96


class PredictRequest(BaseModel):
    """A question about tables (`question` and its CREATE TABLE `context`), or a raw `prompt`."""

    question: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    context: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    max_new_tokens: int = Field(DEFAULT_NEW_TOKENS, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0: greedy")

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


@dataclass
class _Job:
    prompt: str
    max_new_tokens: int
    temperature: float
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Batcher:
    """One generate call at a time; the requests queued meanwhile share the next one."""

    def __init__(self, model: Any, tokenizer: Any, max_batch: int = 32, wait_s: float = 0.01):
        self.model, self.tokenizer, self.max_batch = model, tokenizer, max_batch
        self.wait_s = wait_s  # how long a first request waits for others to join its batch
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.requests = 0
        self.batches = 0  # generate calls made: requests / batches is the mean batch size

    async def submit(self, prompt: str, max_new_tokens: int, temperature: float) -> str:
        self.requests += 1
        job = _Job(prompt, max_new_tokens, temperature)
        await self.queue.put(job)
        return await job.done

    async def run(self) -> None:
        while True:
            jobs = [await self.queue.get()]
            deadline = asyncio.get_running_loop().time() + self.wait_s
            while len(jobs) < self.max_batch:
                if not self.queue.empty():
                    jobs.append(self.queue.get_nowait())
                    continue
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            # one call per sampling setup; greedy requests of different lengths share the longest
            groups: dict[float, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.temperature, []).append(job)
            for temperature, group in groups.items():
                await self._generate(group, temperature)

    async def _generate(self, jobs: list[_Job], temperature: float) -> None:
        self.batches += 1
        longest = max(j.max_new_tokens for j in jobs)
        try:
            texts = await asyncio.to_thread(
                generate, self.model, self.tokenizer, [j.prompt for j in jobs],
                max_new_tokens=longest, batch_size=len(jobs), temperature=temperature,
            )  # fmt: skip
        except Exception as e:  # every waiting request learns of it; the server stays up
            log.exception("generate failed")
            for job in jobs:
                if not job.done.done():
                    job.done.set_exception(e)
            return
        for job, text in zip(jobs, texts, strict=True):
            if longest > job.max_new_tokens:
                text = self._truncate(text, job.max_new_tokens)
            if not job.done.done():
                job.done.set_result(text)

    def check_length(self, prompt: str, max_new_tokens: int) -> None:
        """A prompt the model cannot take is the client's error (422), before it joins a batch."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        tokens = len(self.tokenizer(prompt)["input_ids"])
        if limit and tokens + max_new_tokens > limit:
            raise HTTPException(
                422,
                f"the prompt is {tokens} tokens; with max_new_tokens={max_new_tokens} "
                f"that exceeds the model's {limit} positions",
            )

    def _truncate(self, text: str, max_new_tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][:max_new_tokens]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


@dataclass
class Served:
    """What the server loaded: the components and the version they came from."""

    model_uri: str
    version: str = ""
    batcher: Batcher | None = None
    error: str = ""


def load_components(model_uri: str) -> tuple[Any, Any, str]:
    """Model, tokenizer and registry version of `model_uri` (an alias is resolved once)."""
    import mlflow
    from mlflow.transformers import load_model

    version, uri = "", model_uri
    if model_uri.startswith("models:/") and "@" in model_uri:
        name, alias = model_uri.removeprefix("models:/").split("@", 1)
        version = mlflow.MlflowClient().get_model_version_by_alias(name, alias).version
        uri = f"models:/{name}/{version}"  # what is served does not move with the alias
    components = load_model(uri, return_type="components")
    return components["model"], components["tokenizer"], version


def create_app(model_uri: str, max_batch: int = 32, batch_wait_ms: float = 10) -> FastAPI:
    """The FastAPI app serving `model_uri`."""
    served = Served(model_uri)

    async def load() -> None:
        try:
            model, tokenizer, served.version = await asyncio.to_thread(load_components, model_uri)
        except Exception as e:
            log.exception("could not load %s", model_uri)
            served.error = f"{type(e).__name__}: {e}"
            return
        served.batcher = Batcher(model, tokenizer, max_batch, batch_wait_ms / 1000)
        log.info("serving %s (version %s)", model_uri, served.version or "-")
        await served.batcher.run()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker = asyncio.create_task(load())
        yield
        worker.cancel()  # uvicorn has already let the requests in flight finish

    app = FastAPI(
        title="tunekit text-to-SQL",
        description="The registered champion: a LoRA-tuned Gemma-2 answering questions in SQL.",
        lifespan=lifespan,
    )
    app.state.served = served

    async def answer(prompt: str, max_new_tokens: int, temperature: float) -> PredictResponse:
        if served.batcher is None:
            raise HTTPException(503, served.error or "the model is still loading; see /readyz")
        served.batcher.check_length(prompt, max_new_tokens)
        sql = await served.batcher.submit(prompt, max_new_tokens, temperature)
        return PredictResponse(sql=sql, model_version=served.version, model_uri=model_uri)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Alive."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, Any]:
        """Ready: the model is loaded."""
        if served.batcher is None:
            raise HTTPException(503, served.error or "loading")
        batcher = served.batcher
        return {
            "status": "ready",
            "model_uri": model_uri,
            "model_version": served.version,
            "requests": batcher.requests,
            "generate_calls": batcher.batches,
        }

    @app.get("/predict", response_model=PredictResponse)
    async def predict_get(
        message: Annotated[str, Query(min_length=1, max_length=MAX_PROMPT_CHARS)],
        max_new_tokens: Annotated[int, Query(ge=1, le=MAX_NEW_TOKENS)] = DEFAULT_NEW_TOKENS,
    ) -> PredictResponse:
        """The tutorial's contract: `message` is the whole prompt."""
        if not message.strip():
            raise HTTPException(422, "`message` is empty")
        return await answer(message, max_new_tokens, 0.0)

    @app.post("/predict", response_model=PredictResponse)
    async def predict_post(request: PredictRequest) -> PredictResponse:
        """A question and its CREATE TABLE context (or a raw prompt): the SQL that answers it."""
        return await answer(request.text(), request.max_new_tokens, request.temperature)

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m tunekit.serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model-uri", required=True, help="e.g. models:/NAME@champion")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch", type=int, default=32, help="requests per generate call")
    parser.add_argument(
        "--batch-wait-ms", type=float, default=10, help="how long a batch waits to fill up"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(args.model_uri, args.max_batch, args.batch_wait_ms),
        host=args.host,
        port=args.port,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
