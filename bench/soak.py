"""Soak benchmark: a served champion under hours-of-use traffic, then a burst past its queue.

Against a run whose stage 05 (`tunekit.serve`, FastAPI) or 06 (MLServer) is up, it sends
`--requests` requests at `--concurrency`, mixing the contracts (GET ?message=, POST question and
context, POST raw prompt; V2 infer for MLServer), prompt lengths (a two-column table to a
forty-column one), temperatures (0, 0.3, 0.7, 1e-45) and `max_new_tokens` (8, 32, 64). It
samples the server's memory (RSS of its process tree) every 1,000 requests. Then a burst of
`--burst` requests at once, more than the queue holds: those may only be 200, 429 or 503.

It prints errors by status, p50/p95/p99 latency, requests/s and RSS at 1k and at the end, and
writes them as JSON (`--json`). Not a test: the figures depend on the machine.

Usage:
    .venv/bin/python bench/soak.py --run-dir runs/<id> [--server fastapi|mlserver]
        [--url URL --pid PID]  (another server of the same model, e.g. an older version)
        [--requests 10000] [--concurrency 32] [--burst 600] [--json soak.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from tunekit.local_services import running_services
from tunekit.prompts import build_prompt
from tunekit.run import recorded_run
from tunekit.server_requests import v2_request

TEMPERATURES = (0.0, 0.0, 0.3, 0.7, 1e-45)
NEW_TOKENS = (8, 32, 64)


def question(rng: random.Random) -> tuple[str, str]:
    """A question and a CREATE TABLE context of 2 to 40 columns."""
    columns = [f"column_{i} VARCHAR" for i in range(rng.choice((2, 5, 12, 40)))]
    context = f"CREATE TABLE table_name_{rng.randint(1, 99)} (week INTEGER, {', '.join(columns)})"
    return f"What is column_1 when the week is {rng.randint(1, 17)}?", context


def request_for(server: str, rng: random.Random) -> dict[str, Any]:
    """One request of the mix: method, path and body or query."""
    q, context = question(rng)
    new_tokens, temperature = rng.choice(NEW_TOKENS), rng.choice(TEMPERATURES)
    if server == "mlserver":
        return {"method": "POST", "json": v2_request(build_prompt(q, context))}
    kind = rng.choice(("get", "question", "prompt"))
    if kind == "get":
        params = {"message": build_prompt(q, context), "max_new_tokens": new_tokens}
        return {"method": "GET", "params": params}
    body: dict[str, Any] = {"max_new_tokens": new_tokens, "temperature": temperature}
    body |= {"prompt": build_prompt(q, context)} if kind == "prompt" else {
        "question": q, "context": context}  # fmt: skip
    return {"method": "POST", "json": body}


@dataclass
class Phase:
    """What one phase saw: statuses, latencies of the 200s, wall time."""

    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        q = statistics.quantiles(self.latencies, n=100) if len(self.latencies) > 1 else [0] * 99
        total = sum(self.statuses.values())
        return {
            "requests": total,
            "statuses": dict(sorted(self.statuses.items(), key=str)),
            "p50_s": round(q[49], 3),
            "p95_s": round(q[94], 3),
            "p99_s": round(q[98], 3),
            "requests_per_s": round(total / self.seconds, 1) if self.seconds else 0.0,
        }


async def send(client: httpx.AsyncClient, url: str, request: dict[str, Any], phase: Phase):
    started = time.monotonic()
    try:
        response = await client.request(url=url, timeout=300, **request)
        status: Any = response.status_code
    except httpx.HTTPError as e:
        status = f"error:{type(e).__name__}"
    phase.statuses[status] += 1
    if status == 200:
        phase.latencies.append(time.monotonic() - started)


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its children, MB."""
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


async def soak(url: str, server: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    limits = httpx.Limits(max_connections=args.burst + args.concurrency)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
        main, rss = Phase(), {}
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for _ in range(args.requests):
            queue.put_nowait(request_for(server, rng))
        done = 0

        async def worker() -> None:
            nonlocal done
            while not queue.empty():
                await send(client, url, queue.get_nowait(), main)
                done += 1
                if done % 1000 == 0:
                    rss[done] = round(rss_mb(pid), 1)
                    print(f"{done} requests, RSS {rss[done]} MB, {dict(main.statuses)}", flush=True)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        main.seconds = time.monotonic() - started

        burst = Phase()
        started = time.monotonic()
        await asyncio.gather(
            *(send(client, url, request_for(server, rng), burst) for _ in range(args.burst))
        )
        burst.seconds = time.monotonic() - started
    first, last = rss.get(1000), rss.get(max(rss)) if rss else None
    return {
        "server": server,
        "concurrency": args.concurrency,
        "main": main.summary(),
        "rss_mb": rss,
        "rss_growth_1k_to_end": round((last - first) / first, 4) if first and last else None,
        "burst": burst.summary(),
        "server_errors_outside_burst": sum(
            n for s, n in main.statuses.items() if not isinstance(s, int) or s >= 500
        ),
        "burst_not_200_429_503": sum(
            n for s, n in burst.statuses.items() if s not in (200, 429, 503)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="the run whose server to soak")
    parser.add_argument("--url", help="or a server's predict/infer URL (with --pid)")
    parser.add_argument("--pid", type=int, help="the process of --url, for its memory")
    parser.add_argument("--server", choices=("fastapi", "mlserver"), default="fastapi")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--burst", type=int, default=600, help="requests sent at once, at the end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    if args.url and args.pid:
        url, pid = args.url, args.pid
    elif args.run_dir:
        run = recorded_run(args.run_dir)
        record = running_services(run).get(args.server)
        if record is None:
            raise SystemExit(f"no running {args.server} in {args.run_dir}: run its stage first")
        serving = run.state.section("serving")[args.server]
        url = serving["infer_url"] if args.server == "mlserver" else f"{serving['url']}/predict"
        pid = record["pid"]
    else:
        parser.error("give --run-dir, or --url and --pid")
    result = asyncio.run(soak(url, args.server, pid, args))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
