"""The pieces `tunekit.train` assembles: TRL/PEFT configs from the settings' groups, and
callbacks."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import mlflow
from transformers import TrainerCallback

from tunekit.settings import Settings


def sft_arguments(settings: Settings, output_dir: Path | str) -> dict[str, Any]:
    """TRL's SFTConfig arguments: the `training` group, then what the kit fixes (checkpoints in
    `output_dir`, loss on the completion only, MLflow reporting, the device's precision)."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        **settings.training.as_config(),
        "output_dir": str(Path(output_dir) / "checkpoints"),
        "completion_only_loss": True,  # the loss is on the SQL, not on the prompt
        "train_sampling_strategy": "group_by_length",  # less padding (no packing without FA2)
        "save_strategy": "steps",
        "save_total_limit": 2,
        "eval_strategy": "no",  # evaluated once, at the end, by generation
        "per_device_eval_batch_size": settings.eval_batch_size,
        "bf16": cuda,
        "activation_checkpointing": cuda,
        "use_cpu": not cuda,
        "seed": settings.seed,
        "data_seed": settings.seed,
        "report_to": ["mlflow"],  # transformers 5 reports nowhere unless asked
        "disable_tqdm": True,  # ProgressCallback prints plain lines that stream well
        "dataloader_num_workers": 0,
    }


def lora_arguments(settings: Settings) -> dict[str, Any]:
    """PEFT's LoraConfig arguments: the `lora` group (`all-linear` as PEFT takes it)."""
    config = settings.lora.as_config()
    if config["target_modules"] == ["all-linear"]:
        config["target_modules"] = "all-linear"
    return {
        **config,
        "modules_to_save": config["modules_to_save"] or None,
        "task_type": "CAUSAL_LM",
    }


def sft_config(settings: Settings, output_dir: Path) -> Any:
    """TRL's SFTConfig from the settings."""
    from trl import SFTConfig

    return SFTConfig(**sft_arguments(settings, output_dir))


def lora_config(settings: Settings) -> Any:
    """PEFT's LoraConfig from the settings."""
    from peft import LoraConfig

    return LoraConfig(**lora_arguments(settings))


def recipe(settings: Settings, output_dir: Path | str = "<job dir>") -> str:
    """The fine-tune as the Python `tunekit.train` runs: its LoraConfig and SFTConfig with the
    values of these settings, and the trainer they go into."""

    def call(name: str, arguments: dict[str, Any]) -> str:
        lines = "".join(f"    {k}={v!r},\n" for k, v in arguments.items())
        return f"{name}(\n{lines})"

    return (
        f"peft_config = {call('LoraConfig', lora_arguments(settings))}\n"
        f"args = {call('SFTConfig', sft_arguments(settings, output_dir))}\n"
        "trainer = SFTTrainer(model=base_model, args=args, train_dataset=train_rows,\n"
        "                     processing_class=tokenizer, peft_config=peft_config)\n"
        "trainer.train()"
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
