"""The pieces `tunekit.train` assembles: TRL's and PEFT's configs (their arguments are
`tunekit.recipe`'s), and callbacks."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
from transformers import TrainerCallback

from tunekit.mlflow_outage import MetricBuffer
from tunekit.recipe import lora_arguments, sft_arguments
from tunekit.settings import Settings


def sft_config(settings: Settings, output_dir: Path) -> Any:
    """TRL's SFTConfig from the settings, for this machine's device."""
    import torch
    from trl import SFTConfig

    return SFTConfig(**sft_arguments(settings, output_dir, cuda=torch.cuda.is_available()))


def lora_config(settings: Settings) -> Any:
    """PEFT's LoraConfig from the settings."""
    from peft import LoraConfig

    return LoraConfig(**lora_arguments(settings))


class ThroughputCallback(TrainerCallback):
    """`tokens_per_second` between two logs, into the logs and (asynchronously) to MLflow."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any):
        if logs is None or "num_tokens" not in logs or not state.is_world_process_zero:
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
        if not logs or "loss" not in logs or not state.is_world_process_zero:
            return
        rate = logs.get("tokens_per_second")
        print(
            f"step {state.global_step}/{state.max_steps}  loss {logs['loss']:.4f}  "
            f"lr {logs.get('learning_rate', 0):.2e}" + (f"  {rate:,.0f} tokens/s" if rate else ""),
            file=sys.stdout,
            flush=True,
        )


class MetricBufferCallback(TrainerCallback):
    """Every metric of a log into the job's buffer (`MetricBuffer`), as MLflowCallback logs it
    (transformers/integrations/integration_utils.py `on_log`: ints, floats and one-element
    tensors, at the global step) and with what callbacks before this one added
    (`tokens_per_second`). Put it last."""

    def __init__(self, buffer: MetricBuffer) -> None:
        self.buffer = buffer

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any):
        if not logs or not state.is_world_process_zero:
            return
        metrics = {}
        for name, value in logs.items():
            if hasattr(value, "numel") and value.numel() == 1:
                value = value.item()
            if isinstance(value, (int, float)):
                metrics[name] = float(value)
        if metrics:
            self.buffer.add(metrics, step=state.global_step)


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest `checkpoint-N` whose trainer state was written (the Trainer writes it last)."""
    complete = []
    for path in folder.glob("checkpoint-*"):
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue  # killed while saving: skip it
        if path.name.removeprefix("checkpoint-").isdigit():
            complete.append(path)
    return str(max(complete, key=lambda p: int(p.name.split("-")[1]))) if complete else None
