"""Benchmark: the tutorial's fine-tune recipe against tunekit's default, side by side.

Trains the same tiny-gemma2 on the same synthetic rows twice in one process, each run logging to a
real local MLflow server (stage 02 of a throwaway run), and prints tokens/s of each, their ratio,
and the time spent in MLflow logging as a share of the training time.

  (a) tutorial: batch 4, gradient accumulation 2, group_by_length, LoRA r=32 alpha=64 on
      q_proj/v_proj, max length 256, loss on the whole text, logging every 5 steps to MLflow
      synchronously;
  (b) tunekit:  the local profile's settings through `tunekit.train_parts` (the code `tunekit.train`
      runs), logging asynchronously.

Both see the same number of training sequences. Not a test: numbers depend on the machine.

Usage:
    .venv/bin/python bench/finetune_throughput.py [--sequences 1920] [--rows 4000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets
import mlflow
from peft import LoraConfig
from rich.console import Console
from rich.table import Table
from transformers.integrations import MLflowCallback
from transformers.trainer_callback import PrinterCallback
from trl import SFTConfig, SFTTrainer

import tunekit
from tunekit.models import load_base
from tunekit.prompts import build_example
from tunekit.settings import load_settings
from tunekit.train_parts import ThroughputCallback, lora_config, sft_config


def tutorial_recipe(output_dir: Path, sequences: int) -> tuple[SFTConfig, LoraConfig]:
    args = SFTConfig(
        output_dir=str(output_dir),
        max_steps=sequences // 8,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        train_sampling_strategy="group_by_length",
        learning_rate=2e-4,
        max_length=256,
        completion_only_loss=False,
        logging_steps=5,
        save_strategy="no",
        report_to=["mlflow"],
        use_cpu=True,
        disable_tqdm=True,
    )
    lora = LoraConfig(
        r=32, lora_alpha=64, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
        task_type="CAUSAL_LM",
    )  # fmt: skip
    return args, lora


def tunekit_recipe(settings: Any, output_dir: Path, sequences: int) -> tuple[SFTConfig, LoraConfig]:
    per_step = settings.per_device_train_batch_size * settings.gradient_accumulation_steps
    steps = settings.model_copy(update={"max_steps": sequences // per_step, "save_steps": 10**6})
    return sft_config(steps, output_dir), lora_config(steps)


def _log_synchronously(callback: MLflowCallback) -> None:
    """MLflowCallback picks async logging in its setup (at train begin): undo that per call."""
    on_log = callback.on_log

    def synchronous_on_log(*args: Any, **kwargs: Any) -> Any:
        callback._async_log = False
        return on_log(*args, **kwargs)

    callback.on_log = synchronous_on_log


class _Timed:
    """Wraps a callback's on_log and adds up the seconds spent in it."""

    def __init__(self, callback: Any) -> None:
        self.seconds, self.calls, self._on_log = 0.0, 0, callback.on_log

        def on_log(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            start = time.perf_counter()
            try:
                return self._on_log(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        callback.on_log = on_log


def train_once(name: str, args: SFTConfig, lora: LoraConfig, base: dict, synchronous: bool) -> dict:
    model, tokenizer, _ = load_base(**base)
    rows = base["rows"]
    examples = datasets.Dataset.from_list([build_example(r, tokenizer.eos_token) for r in rows])
    extra = [] if synchronous else [ThroughputCallback()]
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=examples, processing_class=tokenizer,
        peft_config=lora, callbacks=extra,
    )  # fmt: skip
    timed = []
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, MLflowCallback) and synchronous:
            _log_synchronously(callback)  # as the tutorial's MLflow (before 2.8) did
        if isinstance(callback, MLflowCallback | ThroughputCallback):
            timed.append(_Timed(callback))
    trainer.remove_callback(PrinterCallback)
    with mlflow.start_run(run_name=f"bench-{name}"):
        output = trainer.train()
        start = time.perf_counter()
        mlflow.flush_async_logging()  # after training: what async logging left to send
        flush = time.perf_counter() - start
    seconds = output.metrics["train_runtime"]
    tokens = trainer.state.num_input_tokens_seen or _tokens(trainer)
    logging_s = sum(t.seconds for t in timed)  # time the training loop spent in MLflow calls
    return {
        "recipe": name,
        "steps": trainer.state.global_step,
        "sequences": trainer.state.global_step
        * args.per_device_train_batch_size
        * args.gradient_accumulation_steps,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "logging_s": logging_s,
        "logging_share": logging_s / seconds,
        "flush_s": flush,
        "log_calls": sum(t.calls for t in timed),
    }


def _sync_round_trip_ms(calls: int = 50) -> float:
    """Milliseconds per synchronous `log_metric` to the tracking server (a reference point)."""
    with mlflow.start_run(run_name="bench-round-trip"):
        start = time.perf_counter()
        for step in range(calls):
            mlflow.log_metric("probe", step, step=step, synchronous=True)
        return (time.perf_counter() - start) / calls * 1000


def _tokens(trainer: Any) -> int:
    logged = [e["num_tokens"] for e in trainer.state.log_history if "num_tokens" in e]
    return int(logged[-1]) if logged else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=1920, help="training sequences per recipe")
    parser.add_argument("--rows", type=int, default=4000, help="synthetic rows")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each recipe, alternated")
    options = parser.parse_args()
    datasets.disable_progress_bars()
    console = Console(width=130)

    with tempfile.TemporaryDirectory(prefix="tunekit-bench-") as tmp:
        work = Path(tmp)
        run = tunekit.start_run(work / "run", synthetic_rows=options.rows)
        try:
            tunekit.create_cluster(run)
            platform = tunekit.start_mlflow(run)
            mlflow.set_tracking_uri(platform["tracking_uri"])
            mlflow.set_experiment("bench-finetune-throughput")
            settings = load_settings(profile="local", synthetic_rows=options.rows)
            base = {"model_id": settings.model_id, "models_dir": work / "models"}
            load_base(**base)
            round_trip_ms = _sync_round_trip_ms()
            results = []
            for i in range(options.repeats):  # alternate, so drift hits both recipes alike
                results += [
                    train_once("tutorial", *tutorial_recipe(work / f"a{i}", options.sequences),
                               base, synchronous=True),
                    train_once("tunekit", *tunekit_recipe(settings, work / f"b{i}",
                               options.sequences), base, synchronous=False),
                ]  # fmt: skip
        finally:
            tunekit.cleanup(run)

    table = Table(title=f"LoRA fine-tune of tiny-gemma2, {options.sequences} sequences each")
    columns = ("recipe", "steps", "tokens", "train s", "tokens/s", "log calls", "in them s",
               "share", "flush after s")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            r["recipe"], str(r["steps"]), f"{r['tokens']:,}", f"{r['seconds']:.1f}",
            f"{r['tokens_per_s']:,.0f}", str(r["log_calls"]), f"{r['logging_s']:.3f}",
            f"{r['logging_share']:.2%}", f"{r['flush_s']:.2f}",
        )  # fmt: skip
    console.print(table)
    rate = {
        name: statistics.median(r["tokens_per_s"] for r in results if r["recipe"] == name)
        for name in ("tutorial", "tunekit")
    }
    console.print(
        f"median tokens/s: tutorial {rate['tutorial']:,.0f}, tunekit {rate['tunekit']:,.0f}; "
        f"tunekit / tutorial: {rate['tunekit'] / rate['tutorial']:.2f}x"
    )
    console.print(f"one synchronous log_metric round trip to the server: {round_trip_ms:.1f} ms")
    console.print(
        "share: time the training loop spent inside MLflow logging calls, over the training time; "
        "flush after: what asynchronous logging still had to send when training ended."
    )


if __name__ == "__main__":
    main()
