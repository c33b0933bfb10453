"""The pieces `tunekit.train` assembles: TRL/PEFT configs from the settings, and callbacks."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import mlflow
from transformers import TrainerCallback

from tunekit.settings import Settings


def sft_config(settings: Settings, output_dir: Path) -> Any:
    """TRL's SFTConfig: the settings' training knobs, checkpoints, MLflow reporting."""
    import torch
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(output_dir / "checkpoints"),
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.per_device_train_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler_type,
        warmup_steps=settings.warmup_ratio,  # a float below 1 is a share of max_steps
        max_length=settings.max_length,
        completion_only_loss=True,  # the loss is on the SQL, not on the prompt
        train_sampling_strategy="group_by_length",  # less padding (no packing without FA2)
        logging_steps=settings.logging_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=2,
        eval_strategy="no",  # evaluated once, at the end, by generation
        per_device_eval_batch_size=settings.eval_batch_size,
        bf16=cuda,
        activation_checkpointing=cuda,
        use_cpu=not cuda,
        seed=settings.seed,
        data_seed=settings.seed,
        report_to=["mlflow"],  # transformers 5 reports nowhere unless asked
        run_name=None,
        disable_tqdm=True,  # ProgressCallback prints plain lines that stream well
        dataloader_num_workers=0,
    )


def lora_config(settings: Settings) -> Any:
    """PEFT's LoraConfig from the settings."""
    from peft import LoraConfig

    targets = settings.lora_target_modules
    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=targets[0] if targets == ["all-linear"] else targets,
        modules_to_save=settings.lora_modules_to_save or None,
        task_type="CAUSAL_LM",
    )


class ThroughputCallback(TrainerCallback):
    """`tokens_per_second` between two logs, into the logs and (asynchronously) to MLflow."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any):
        if logs is None or "num_tokens" not in logs:
            return
        now, tokens = time.monotonic(), float(logs["num_tokens"])
        if self._last and now > self._last[0]:
            rate = (tokens - self._last[1]) / (now - self._last[0])
            logs["tokens_per_second"] = rate
            mlflow.log_metric("tokens_per_second", rate, step=state.global_step, synchronous=False)
        self._last = (now, tokens)


class ProgressCallback(TrainerCallback):
    """One line per log: step, loss, learning rate, tokens/s. Plain text streams anywhere."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any):
        if not logs or "loss" not in logs:
            return
        rate = logs.get("tokens_per_second")
        print(
            f"step {state.global_step}/{state.max_steps}  loss {logs['loss']:.4f}  "
            f"lr {logs.get('learning_rate', 0):.2e}" + (f"  {rate:,.0f} tokens/s" if rate else ""),
            file=sys.stdout,
            flush=True,
        )
