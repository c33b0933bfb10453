"""Benchmark: the tutorial's serving shape against `tunekit.serve`, on the same registered model.

Fine-tunes and registers a tiny model in a throwaway run (stages 01-04), then serves the same
version two ways, one after the other on the same machine:

  (a) tutorial: FastAPI GET handler, one `transformers` pipeline call per request
      (bench/tutorial_server.py);
  (b) tunekit:  `python -m tunekit.serve`, concurrent requests batched into shared `generate` calls.

Both get the same prompts over the same contract (`GET /predict?message=...`, greedy, the same
`max_new_tokens`) at concurrency 1, 8 and 16, and the script prints requests/s, p50/p95 latency
and the ratios. Not a test: numbers depend on the machine.

Usage:
    .venv/bin/python bench/serving_throughput.py [--requests-per-client 10] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from rich.console import Console
from rich.table import Table

import tunekit
from tunekit.data import load_splits
from tunekit.prompts import build_prompt
from tunekit.services import ServiceSpec, ensure_service, stop_service
from tunekit.serving import champion_version, fastapi_spec
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests-per-client", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=300)
    options = parser.parse_args()
    console = Console(width=120)
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
