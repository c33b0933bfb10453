"""Benchmark: the tutorial's serving shape against `tunekit.serve`, on the same registered model.

Fine-tunes and registers a tiny model in a throwaway run (stages 01-04), then serves the same
version two ways, one after the other on the same machine:

  (a) tutorial: FastAPI GET handler, one `transformers` pipeline call per request
      (bench/tutorial_server.py);
  (b) tunekit:  `python -m tunekit.serve`, concurrent requests batched into shared `generate` calls.

Both get the same prompts over the same contract (`GET /predict?message=...`, greedy, the same
`max_new_tokens`) at concurrency 1, 8 and 16, and the script prints requests/s, p50/p95 latency
and the ratios. Not a test: numbers depend on the machine.

With `--mlserver RUN_DIR`, stage 06 instead, on a run whose champion is registered and whose
MLflow is up: MLServer started twice on the champion, one after the other, (a) `upstream`,
mlserver-mlflow's `MLflowRuntime` one request at a time (stage 06 before the kit's runtime) and
(b) `kit`, stage 06's container as it is (tunekit.mlserver_runtime: request caps, the model off
the event loop, adaptive batching). Each is warmed up, then gets the same V2 requests, one
prompt each, N requests at concurrency C for each N of `--requests` (the soak: 1000); the
script prints errors by status, p50/p95/p99 latency, requests/s, the server's peak RSS, and
the slowest answer of /v2/health/live, probed every 0.1 s during the load.

Usage:
    .venv/bin/python bench/serving_throughput.py [--requests-per-client 10] [--max-new-tokens 64]
    .venv/bin/python bench/serving_throughput.py --mlserver runs/champ [--requests 200 1000]
        [--concurrency 8] [--warmup 200]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests
from rich.console import Console
from rich.table import Table

import tunekit
from tunekit.backends.local.processes import fastapi_spec, mlserver_spec
from tunekit.local_services import ServiceSpec, ensure_service, free_port, stop_service
from tunekit.prompts import build_prompt
from tunekit.server_requests import champion_version, v2_request
from tunekit.splits import load_splits
from tunekit.tracking import tracking_uri

CONCURRENCY = (1, 8, 16)
BENCH = Path(__file__).resolve().parent


def servers(run: tunekit.Run) -> dict[str, ServiceSpec]:
    env = {"MLFLOW_TRACKING_URI": tracking_uri(run), "HF_HUB_OFFLINE": "1"}
    version_uri = f"models:/{run.settings.registered_model_name}/{champion_version(run)}"
    return {
        "tutorial": ServiceSpec(
            name="bench-tutorial",
            command=[
                sys.executable,
                "-m",
                "uvicorn",
                "tutorial_server:app",
                "--app-dir",
                str(BENCH),
                "--port",
                "{port}",
            ],
            health_path="/healthz",
            env={**env, "MODEL_URI": version_uri},
        ),
        "tunekit": dataclasses.replace(fastapi_spec(run), name="bench-tunekit"),  # stage 05's
    }


def load(url: str, prompts: list[str], clients: int, per_client: int, tokens: int) -> dict:
    """`clients` threads, each sending `per_client` requests back to back."""
    work = [prompts[i % len(prompts)] for i in range(clients * per_client)]

    def one(prompt: str) -> float:
        start = time.perf_counter()
        response = requests.get(
            f"{url}/predict", params={"message": prompt, "max_new_tokens": tokens}, timeout=300
        )
        response.raise_for_status()
        assert isinstance(response.json()["sql"], str)
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = sorted(pool.map(one, work))
    wall = time.perf_counter() - start
    return {
        "requests_per_s": len(work) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
    }


# What stage 06 ran before the kit's runtime: the upstream MLflow runtime, one request at a time
UPSTREAM = {"MLSERVER_MODEL_IMPLEMENTATION": "mlserver_mlflow.MLflowRuntime"}
KIT_ONLY = ("MLSERVER_MODEL_EXTRA", "MLSERVER_MODEL_MAX_BATCH_SIZE",
            "MLSERVER_MODEL_MAX_BATCH_TIME", "MLSERVER_GRPC_MAX_MESSAGE_LENGTH", "PYTHONPATH",
            "TUNEKIT_RUNTIME_DIGEST")  # fmt: skip


def mlservers(run: tunekit.Run) -> dict[str, ServiceSpec]:
    """Stage 06's MLServer as it is (`kit`) and with the upstream runtime (`upstream`), on ports
    of their own (stage 06's server may be running)."""
    spec = mlserver_spec(run)
    ports = {"MLSERVER_GRPC_PORT": str(free_port()), "MLSERVER_METRICS_PORT": str(free_port())}
    upstream = {k: v for k, v in spec.env.items() if k not in KIT_ONLY} | UPSTREAM
    return {
        "upstream": dataclasses.replace(spec, name="bench-mlserver-upstream",
                                        env=upstream | ports),
        "kit": dataclasses.replace(spec, name="bench-mlserver-kit", env=spec.env | ports),
    }  # fmt: skip


def v2_load(server: dict, infer_url: str, prompts: list[str], requests_n: int,
            clients: int) -> dict:  # fmt: skip
    """`requests_n` V2 requests of one prompt each from `clients` threads; meanwhile the
    server's RSS (with its children) and /v2/health/live are sampled."""
    work = [prompts[i % len(prompts)] for i in range(requests_n)]
    process, done = psutil.Process(server["pid"]), threading.Event()
    samples: dict[str, list[float]] = {"rss": [], "live": []}

    def watch() -> None:
        while not done.is_set():
            tree = [process, *process.children(recursive=True)]
            samples["rss"].append(sum(p.memory_info().rss for p in tree))
            start = time.perf_counter()
            with contextlib.suppress(requests.RequestException):
                requests.get(f"{server['url']}/v2/health/live", timeout=30)
            samples["live"].append(time.perf_counter() - start)
            done.wait(0.1)

    def one(prompt: str) -> tuple[int, float]:
        start = time.perf_counter()
        try:
            response = requests.post(infer_url, json=v2_request(prompt), timeout=300)
            status = response.status_code
            if status == 200:
                assert isinstance(response.json()["outputs"][0]["data"][0], str)
        except requests.RequestException:
            status = 0  # no answer
        return status, time.perf_counter() - start

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(one, work))
    wall = time.perf_counter() - start
    done.set()
    watcher.join()
    latencies = sorted(t for _, t in answers)

    def pct(q: float) -> float:
        return latencies[int(q * (len(latencies) - 1))] * 1000

    return {
        "wall_s": wall,
        "requests_per_s": len(work) / wall,
        "statuses": dict(Counter(s for s, _ in answers)),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "peak_rss_mb": max(samples["rss"]) / 2**20,
        "slowest_live_ms": max(samples["live"]) * 1000,
    }


def bench_mlserver(run_dir: Path, counts: list[int], clients: int, warmup: int,
                   console: Console) -> None:  # fmt: skip
    run = tunekit.open_run(run_dir)
    _, held_out = load_splits(run.settings)
    prompts = [build_prompt(r["question"], r["context"]) for r in held_out]
    name = run.settings.registered_model_name
    results: dict[str, dict[int, dict]] = {}
    for variant, spec in mlservers(run).items():
        server = ensure_service(run, spec)
        try:
            infer_url = f"{server['url']}/v2/models/{name}/infer"
            # warm up: torch on CPU is slow on the first inputs of each new shape
            v2_load(server, infer_url, prompts, warmup, clients)
            results[variant] = {}
            for n in counts:
                results[variant][n] = v2_load(server, infer_url, prompts, n, clients)
                console.print(f"{variant}, {n} requests at concurrency {clients}: "
                              f"{results[variant][n]}")  # fmt: skip
        finally:
            stop_service(run, spec.name)
    table = Table(title=f"MLServer (stage 06) on {run.id}'s champion, concurrency {clients}")
    for column in ("requests", "runtime", "wall s", "req/s", "p50/p95/p99 ms", "errors",
                   "peak RSS MB", "slowest live ms"):  # fmt: skip
        table.add_column(column, justify="right")
    for n in counts:
        for variant, by_count in results.items():
            r = by_count[n]
            errors = {s: c for s, c in r["statuses"].items() if s != 200} or "none"
            table.add_row(
                str(n), variant, f"{r['wall_s']:.1f}", f"{r['requests_per_s']:.1f}",
                f"{r['p50_ms']:.0f} / {r['p95_ms']:.0f} / {r['p99_ms']:.0f}", str(errors),
                f"{r['peak_rss_mb']:.0f}", f"{r['slowest_live_ms']:.0f}",
            )  # fmt: skip
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests-per-client", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--mlserver", type=Path, metavar="RUN_DIR",
                        help="measure stage 06's MLServer on this run instead")  # fmt: skip
    parser.add_argument("--requests", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=200, help="requests before measuring")
    options = parser.parse_args()
    console = Console(width=120)
    if options.mlserver:
        bench_mlserver(options.mlserver, options.requests, options.concurrency, options.warmup,
                       console)  # fmt: skip
        return
    results: dict[str, dict[int, dict]] = {}

    with tempfile.TemporaryDirectory(prefix="tunekit-bench-") as tmp:
        run = tunekit.start_run(
            Path(tmp) / "run", synthetic_rows=4000, eval_size=100,
            max_steps=options.train_steps, save_steps=10**6,
        )  # fmt: skip
        try:
            tunekit.create_cluster(run)
            tunekit.start_mlflow(run)
            console.print(f"Fine-tuning tiny-gemma2 for {options.train_steps} steps...")
            tunekit.finetune(run)
            tunekit.register_model(run)
            _, held_out = load_splits(run.settings)
            prompts = [build_prompt(r["question"], r["context"]) for r in held_out]
            for name, spec in servers(run).items():
                server = ensure_service(run, spec)
                load(server["url"], prompts, 1, 2, options.max_new_tokens)  # warm up
                results[name] = {}
                for clients in CONCURRENCY:
                    results[name][clients] = load(server["url"], prompts, clients,
                                                  options.requests_per_client,
                                                  options.max_new_tokens)  # fmt: skip
                    console.print(f"{name} at concurrency {clients}: {results[name][clients]}")
                stop_service(run, spec.name)
        finally:
            tunekit.cleanup(run)

    table = Table(title=f"Serving tiny-gemma2, greedy, max_new_tokens={options.max_new_tokens}")
    for column in ("concurrency", "tutorial req/s", "tunekit req/s", "ratio",
                   "tutorial p50/p95 ms", "tunekit p50/p95 ms"):  # fmt: skip
        table.add_column(column, justify="right")
    for clients in CONCURRENCY:
        a, b = results["tutorial"][clients], results["tunekit"][clients]
        table.add_row(
            str(clients), f"{a['requests_per_s']:.1f}", f"{b['requests_per_s']:.1f}",
            f"{b['requests_per_s'] / a['requests_per_s']:.2f}x",
            f"{a['p50_ms']:.0f} / {a['p95_ms']:.0f}", f"{b['p50_ms']:.0f} / {b['p95_ms']:.0f}",
        )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
