"""Benchmark: a rollout served by one process (two LoRA adapters on one base) against two servers.

Two LoRA adapters of the same shape are made on tiny-gemma2 (random, different weights, saved
as PEFT folders), then served two ways, one after the other on this machine:

  (a) two servers: `tunekit.serve`'s app twice, one adapter each (a champion Deployment and a
      challenger Deployment, or two InferenceServices);
  (b) one server: `tunekit.serve`'s app with both adapters (`tunekit.traffic`), PEFT's
      mixed-adapter rows in shared `generate` calls.

Each server is its own process (uvicorn on the app), its PyTorch given its share of the
cores (two servers: half each; one server: all), as each would get its own on a cluster,
rather than two servers' threads contending for every core. Both setups get the same requests: every
prompt asked of each adapter by name, `--requests` in all at `--concurrency`; the script checks
that (b) answers each adapter exactly as (a)'s server of that adapter does, and prints the
resident memory of the server processes after the load (psutil RSS, summed) and requests/s.
Not a test: numbers depend on the machine. With tiny-gemma2 the base is 0.8M parameters, so
the memory saved is one Python, PyTorch and tokenizer runtime; with gemma-2-9b it is also a
copy of the 18 GB (bf16) base, i.e. a GPU.

Usage:
    .venv/bin/python bench/rollout_serving.py [--requests 256] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import requests

PROMPTS = [
    ("How many games had a week of 3?", "CREATE TABLE game (venue TEXT, week INT)"),
    ("Who is the youngest pilot?", "CREATE TABLE pilot (name TEXT, age INT)"),
    ("Name the coach from Leeds", "CREATE TABLE table_name_7 (coach VARCHAR, city VARCHAR)"),
    ("How many ships sail under the flag of Peru?", "CREATE TABLE ship (name TEXT, flag TEXT)"),
]  # fmt: skip


def make_adapters(folder: Path) -> list[Path]:
    """Two random LoRA adapters on tiny-gemma2, saved as PEFT folders."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunekit.models import TINY_DIR

    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(TINY_DIR)
        config = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"],
                            init_lora_weights=False)  # fmt: skip
        path = folder / f"adapter-{seed}"
        get_peft_model(base, config).save_pretrained(path)
        paths.append(path)
    return paths


def serve(adapters: list[str], port: int) -> None:
    """One server process: the first adapter as the champion, the second (if any) beside it."""
    import uvicorn
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunekit.models import TINY_DIR
    from tunekit.serve import Decoding, create_app
    from tunekit.traffic import CHALLENGER, Split

    def load(_: str) -> tuple[Any, Any, str]:
        base = AutoModelForCausalLM.from_pretrained(TINY_DIR)
        model = PeftModel.from_pretrained(base, adapters[0]).eval()
        return model, AutoTokenizer.from_pretrained(TINY_DIR), "1"

    def add(model: Any, _: str) -> str:
        model.load_adapter(adapters[1], CHALLENGER)
        return "2"

    app = create_app("models:/bench@champion", load=load, decoding=Decoding(),
                     challenger_uri="models:/bench@challenger" if len(adapters) > 1 else None,
                     split=Split(0.5), add_challenger=add)  # fmt: skip
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(adapters: list[Path], threads: int) -> tuple[subprocess.Popen, str]:
    """A server process whose PyTorch uses `threads` cores (its share of the machine)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", *map(str, adapters),
                                "--port", str(port)],
                               env={**os.environ, "OMP_NUM_THREADS": str(threads)})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    process.kill()
    raise TimeoutError(f"the server on {adapters} did not get ready")


def load_test(urls: dict[str, str], total: int, concurrency: int) -> tuple[dict, float]:
    """`total` requests, each prompt asked of each adapter in turn; answers and requests/s."""
    jobs = [(i % len(PROMPTS), ("champion", "challenger")[(i // len(PROMPTS)) % 2])
            for i in range(total)]  # fmt: skip

    def ask(job: tuple[int, str]) -> tuple[tuple[int, str], str]:
        i, adapter = job
        question, context = PROMPTS[i]
        body = {"question": question, "context": context, "max_new_tokens": 32,
                "adapter": adapter if len(set(urls.values())) == 1 else None}  # fmt: skip
        got = requests.post(f"{urls[adapter]}/predict", json=body, timeout=300)
        got.raise_for_status()
        return job, got.json()["sql"]

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        answers = dict(pool.map(ask, jobs))
    return answers, total / (time.monotonic() - started)


def rss_mb(processes: list[subprocess.Popen]) -> float:
    return sum(psutil.Process(p.pid).memory_info().rss for p in processes) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.port)
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as scratch:
        champion, challenger = make_adapters(Path(scratch))
        results = {}
        for setup in ("two servers", "one server"):
            if setup == "two servers":  # each gets half the cores
                half = max(1, cores // 2)
                started = [start([champion], half), start([challenger], half)]
                urls = {"champion": started[0][1], "challenger": started[1][1]}
            else:
                started = [start([champion, challenger], cores)]
                urls = {"champion": started[0][1], "challenger": started[0][1]}
            processes = [p for p, _ in started]
            try:
                load_test(urls, 32, args.concurrency)  # warm-up
                answers, per_s = load_test(urls, args.requests, args.concurrency)
                results[setup] = (answers, per_s, rss_mb(processes), len(processes))
            finally:
                for p in processes:
                    p.terminate()
                    p.wait(30)
    same = results["one server"][0] == results["two servers"][0]
    print(f"{'setup':<12} {'processes':>9} {'RSS MB':>8} {'requests/s':>11}")
    for setup, (_, per_s, rss, count) in results.items():
        print(f"{setup:<12} {count:>9} {rss:>8.0f} {per_s:>11.1f}")
    one, two = results["one server"], results["two servers"]
    print(f"memory one/two: {one[2] / two[2]:.2f}  requests/s one/two: {one[1] / two[1]:.2f}")
    print(f"the one server answers each adapter as its own server does: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
