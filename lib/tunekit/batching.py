"""Batching concurrent requests into shared `generate` calls, with a bounded queue.

Requests wait in a queue (at most `max_queue`: one more is refused, and the server answers 429)
while a `generate` call runs. Then the next call is formed: the waiting request with the fewest
`max_new_tokens` goes first (the oldest, once one has waited `starvation_s`), with the requests
of the same size class (`max_new_tokens` within a factor of two), up to `max_batch` rows and
`token_budget` padded tokens. So short requests are not held for a long one's tokens, a long
prompt does not pad 31 others, and no request starves. Greedy and sampled requests, each with its
own temperature, constrained and free ones, each with its own grammar, and the rows of two LoRA
adapters of one model (a rollout's champion and challenger) share a call. A
request whose caller gave up (deadline, disconnect) is dropped before it is generated. Out of
memory, a call is split in halves and retried; a single request that does not fit fails alone.
A call of two adapters' rows that fails is retried an adapter at a time: a rollout's failing
challenger fails its own requests, not the champion's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tunekit.inference import LockedTokenizer, generate_batch

log = logging.getLogger("tunekit.serve")


@dataclass(frozen=True)
class Limits:
    """What one server takes on at once, and how long a request may wait."""

    max_batch: int = 32  # rows in one generate call
    batch_wait_ms: float = 10  # how long the first request of a call waits for others
    max_queue: int = 256  # waiting requests; one more is refused (429)
    token_budget: int = 16384  # padded tokens (prompt + new) in one generate call
    request_timeout_s: float = 60  # past it a waiting request is answered 503
    starvation_s: float = 5.0  # a request waiting longer goes next, whatever its size
    stall_s: float = 300  # a generate call running longer: the server is not live


class QueueFull(Exception):
    """The queue holds `max_queue` requests."""


class OutOfMemory(Exception):
    """One request alone does not fit in memory."""


@dataclass(eq=False)
class Job:
    prompt: str
    prompt_tokens: int
    max_new_tokens: int
    temperature: float
    grammar: str | None = None  # the answer's grammar (tunekit.grammar); None: free
    adapter: str | None = (
        None  # the LoRA adapter that answers (a model with several); None: its one
    )
    arrived: float = field(default_factory=time.monotonic)
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def size_class(self) -> int:
        return self.max_new_tokens.bit_length()  # 8 -> 4, 16..31 -> 5, 32..63 -> 6, 64 -> 7


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.OutOfMemoryError | MemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error)
    )


class Batcher:
    """One generate call at a time; the requests queued meanwhile share the next ones."""

    def __init__(self, model: Any, tokenizer: Any, limits: Limits | None = None):
        self.model, self.tokenizer = model, LockedTokenizer(tokenizer)
        self.limits = limits or Limits()
        self.pending: deque[Job] = deque()
        self._arrived = asyncio.Event()
        self.requests = 0
        self.batches = 0  # generate calls made: requests / batches is the mean batch size
        self.refused = 0  # queue full
        self.dropped = 0  # their caller had gone when their turn came
        self.busy_since: float | None = None  # when the running generate call started
        self.stopped: BaseException | None = None

    def submit(
        self,
        prompt: str,
        prompt_tokens: int,
        max_new_tokens: int,
        temperature: float,
        grammar: str | None = None,
        adapter: str | None = None,
    ) -> Job:
        """Queue a request; its Job's `done` gets the text. QueueFull when the queue is full."""
        if self.stopped is not None:
            raise RuntimeError(f"the batcher has stopped: {self.stopped!r}")
        if len(self.pending) >= self.limits.max_queue:
            self.refused += 1
            raise QueueFull(f"{len(self.pending)} requests are waiting")
        self.requests += 1
        job = Job(prompt, prompt_tokens, max_new_tokens, temperature, grammar, adapter)
        self.pending.append(job)
        self._arrived.set()
        return job

    def stalled(self) -> bool:
        """A generate call has run longer than `stall_s`."""
        return self.busy_since is not None and (
            time.monotonic() - self.busy_since > self.limits.stall_s
        )

    async def run(self) -> None:
        """Form and run batches until cancelled; waiting requests learn if it stops."""
        try:
            while True:
                while not self.pending:
                    self._arrived.clear()
                    await self._arrived.wait()
                if len(self.pending) < self.limits.max_batch:
                    await asyncio.sleep(self.limits.batch_wait_ms / 1000)  # let others join
                if jobs := self.next_batch():
                    await self._generate(jobs)
        except BaseException as e:
            self.stopped = e
            for job in self.pending:
                if not job.done.done():
                    job.done.set_exception(RuntimeError("the server is shutting down"))
            raise

    def next_batch(self) -> list[Job]:
        """Take the oldest live request and those that fit with it out of the queue."""
        live = [j for j in self.pending if not j.done.done()]
        self.dropped += len(self.pending) - len(live)
        if not live:
            self.pending.clear()
            return []
        oldest = live[0]
        if time.monotonic() - oldest.arrived >= self.limits.starvation_s:
            seed = oldest
        else:
            seed = min(live, key=lambda j: j.size_class)  # the first of the smallest class
        batch = [seed]
        for job in live:
            if len(batch) == self.limits.max_batch:
                break
            if job is not seed and job.size_class == seed.size_class and self._fits([*batch, job]):
                batch.append(job)
        chosen = set(map(id, batch))
        self.pending = deque(j for j in live if id(j) not in chosen)
        return batch

    def _fits(self, jobs: list[Job]) -> bool:
        width = max(j.prompt_tokens for j in jobs) + max(j.max_new_tokens for j in jobs)
        return len(jobs) * width <= self.limits.token_budget

    async def _generate(self, jobs: list[Job]) -> None:
        self.batches += 1
        self.busy_since = time.monotonic()
        try:
            texts = await asyncio.to_thread(
                generate_batch, self.model, self.tokenizer, [j.prompt for j in jobs],
                [j.max_new_tokens for j in jobs], [j.temperature for j in jobs],
                [j.grammar for j in jobs],
                [j.adapter or "" for j in jobs] if any(j.adapter for j in jobs) else None,
            )  # fmt: skip
        except Exception as e:
            if _is_out_of_memory(e) and len(jobs) > 1:
                log.warning("out of memory generating %d rows: splitting the batch", len(jobs))
                half = len(jobs) // 2
                await self._generate(jobs[:half])
                await self._generate(jobs[half:])
                return
            adapters = list(dict.fromkeys(j.adapter for j in jobs))
            if not _is_out_of_memory(e) and len(adapters) > 1:
                # one adapter's failure (a rollout's challenger) fails its own rows only
                log.warning("generate failed on %d adapters' rows: each alone", len(adapters))
                for adapter in adapters:
                    await self._generate([j for j in jobs if j.adapter == adapter])
                return
            if _is_out_of_memory(e):
                e = OutOfMemory(
                    f"the request does not fit in memory ({jobs[0].prompt_tokens} prompt tokens, "
                    f"max_new_tokens={jobs[0].max_new_tokens}); ask for fewer tokens"
                )
            else:
                log.exception("generate failed")
            for job in jobs:  # every request of the call learns of it; the server stays up
                if not job.done.done():
                    job.done.set_exception(e)
            return
        finally:
            self.busy_since = None
        for job, text in zip(jobs, texts, strict=True):
            if not job.done.done():
                job.done.set_result(text)
