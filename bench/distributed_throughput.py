"""Benchmark: LoRA training throughput of 1 against N training processes, side by side.

Each measurement is one torchrun launch of this file's `worker`, which trains with the kit's
own recipe (`tunekit.recipe` through `tunekit.train_parts`: the same SFTConfig, LoraConfig and
DDP/FSDP arguments `tunekit.train` uses) for `--steps` optimizer steps on synthetic rows and
reports tokens/s over all processes, the first `--warmup` steps left out. Launches alternate
(1, N, 1, N, ...) so that a drifting machine affects both alike. Not a test: numbers depend
on the machine.

- `--model tiny-gemma2` (default): the local profile's model on the CPU, gloo between the
  processes. On a 2-core machine two processes share the two cores one process already
  uses, so expect no speed-up; the figure says what the extra process costs.
- `--model gemma-2-9b`: the real gemma-2-9b architecture (its config, random weights, bf16,
  nothing downloaded) on GPUs, one process per GPU (NCCL); sequences of `--length` tokens.

Usage:
    .venv/bin/python bench/distributed_throughput.py                      # CPU: 1 vs 2
    .venv/bin/python bench/distributed_throughput.py --model gemma-2-9b --processes 8 \
        --steps 30 --warmup 5 --length 512                                 # a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import TrainerCallback

# gemma-2-9b's config.json (huggingface.co/google/gemma-2-9b), without its weights
GEMMA_2_9B = {
    "vocab_size": 256000,
    "hidden_size": 3584,
    "intermediate_size": 14336,
    "num_hidden_layers": 42,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 256,
    "max_position_embeddings": 8192,
    "sliding_window": 4096,
    "query_pre_attn_scalar": 256,
    "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0,
    "hidden_activation": "gelu_pytorch_tanh",
    "rms_norm_eps": 1e-06,
}


def worker(args: argparse.Namespace) -> None:
    """One training process (torchrun starts `--processes` of them)."""
    import datasets
    import torch
    from trl import SFTTrainer

    from tunekit import distributed
    from tunekit.models import load_base
    from tunekit.prompts import build_example
    from tunekit.settings import load_settings
    from tunekit.splits import load_splits
    from tunekit.train_parts import lora_config, sft_config

    world = int(os.environ.get("WORLD_SIZE", "1"))
    gpu = args.model == "gemma-2-9b"
    sizes = {"per_device_train_batch_size": args.batch, "gradient_accumulation_steps": 1,
             "max_length": args.length}  # fmt: skip
    settings = load_settings(
        nproc_per_node=world,
        max_steps=args.warmup + args.steps,
        save_steps=10**6,
        logging_steps=1,
        synthetic_rows=max(2000, 8 * world * (args.warmup + args.steps) + 100),
        **(sizes if gpu else {}),
    )
    processes = distributed.state(torch.cuda.is_available())
    if gpu:
        model, tokenizer = _random_gemma_2_9b(processes.local_process_index)
        rows = [{"input_ids": ids} for ids in _random_sequences(args, settings)]
    else:
        model, tokenizer, _ = load_base("tiny-gemma2", models_dir=Path(args.models_dir))
        train_rows, _ = load_splits(settings)
        rows = [build_example(r, tokenizer.eos_token) for r in train_rows]
    with tempfile.TemporaryDirectory() as out:
        config = sft_config(settings, Path(out))
        config.report_to = []
        config.save_strategy = "no"
        if gpu:
            config.completion_only_loss = False  # plain token sequences
        timer = _Timer(args.warmup)
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora_config(settings),
            callbacks=[timer],
        )
        trainer.train()
    if processes.is_main_process:
        print("RESULT " + json.dumps({"processes": world, **timer.result()}), flush=True)


class _Timer(TrainerCallback):
    """Tokens and seconds between the end of step `warmup` and the last step (TRL's
    `num_tokens`: over all processes)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.points: list[tuple[float, float]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any):
        if logs and "num_tokens" in logs and state.global_step >= self.warmup:
            self.points.append((time.perf_counter(), float(logs["num_tokens"])))

    def result(self) -> dict[str, float]:
        (t0, n0), (t1, n1) = self.points[0], self.points[-1]
        return {"tokens_per_second": (n1 - n0) / (t1 - t0), "seconds": t1 - t0}


def _random_gemma_2_9b(device: int) -> tuple[Any, Any]:
    import torch
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(**GEMMA_2_9B, attn_implementation="eager")
    with torch.device(f"cuda:{device}"):
        model = Gemma2ForCausalLM(config).to(torch.bfloat16)
    from tunekit.models import TINY_DIR

    tokenizer = AutoTokenizer.from_pretrained(TINY_DIR)  # padding and eos only: ids are random
    return model, tokenizer


def _random_sequences(args: argparse.Namespace, settings: Any) -> list[list[int]]:
    import random

    rng = random.Random(0)
    count = args.batch * int(os.environ.get("WORLD_SIZE", "1")) * (args.warmup + args.steps + 1)
    return [[rng.randrange(4, 1000) for _ in range(args.length)] for _ in range(count)]


def launch(processes: int, args: argparse.Namespace) -> dict[str, float]:
    argv = [str(Path(sys.executable).with_name("torchrun")), "--standalone",
            f"--nproc-per-node={processes}", __file__, "worker", "--model", args.model,
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch",
            str(args.batch), "--length", str(args.length), "--models-dir",
            args.models_dir]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(
            f"{processes} process(es) failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="driver", choices=["driver", "worker"])
    parser.add_argument("--model", default="tiny-gemma2", choices=["tiny-gemma2", "gemma-2-9b"])
    parser.add_argument("--processes", type=int, default=2, help="N, measured against 1")
    parser.add_argument("--steps", type=int, default=150, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=20, help="steps before the timing")
    parser.add_argument("--repeats", type=int, default=2, help="alternated launches of each")
    parser.add_argument("--batch", type=int, default=4, help="gemma-2-9b: sequences per GPU")
    parser.add_argument("--length", type=int, default=512, help="gemma-2-9b: tokens each")
    parser.add_argument("--models-dir", default=tempfile.gettempdir() + "/tunekit-bench-models")
    args = parser.parse_args()
    if args.mode == "worker":
        worker(args)
        return
    results: dict[int, list[dict[str, float]]] = {1: [], args.processes: []}
    for _ in range(args.repeats):
        for n in results:
            results[n].append(launch(n, args))
            print(f"{n} process(es): {results[n][-1]['tokens_per_second']:,.0f} tokens/s",
                  flush=True)  # fmt: skip
    rates = {n: statistics.mean(r["tokens_per_second"] for r in rs) for n, rs in results.items()}
    print(f"\n{args.model}, {args.steps} timed steps, {args.repeats} alternated launches each")
    for n, rate in rates.items():
        print(f"  {n} process(es): {rate:,.0f} tokens/s ({rate / n:,.0f} per process)")
    print(f"  speed-up of {args.processes} over 1: {rates[args.processes] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
