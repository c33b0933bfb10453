"""The fine-tune's recipe: the arguments of PEFT's LoraConfig and TRL's SFTConfig, built from the
settings' `lora` and `training` groups, and the same as code for a reader (notebook 03). No
import of torch, TRL or PEFT here: a notebook shows the recipe in a blink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunekit.distributed import trainer_arguments
from tunekit.settings import Settings


class _Code(str):
    """An expression shown as itself in the recipe (`cuda`, `not cuda`)."""

    def __repr__(self) -> str:
        return str(self)


def sft_arguments(settings: Settings, output_dir: Path | str, cuda: bool | _Code) -> dict[str, Any]:
    """TRL's SFTConfig arguments: the `training` group, then what the kit fixes (checkpoints in
    `output_dir`, loss on the completion only, MLflow reporting, the precision of the device:
    bf16 and activation checkpointing on a GPU, `cuda`)."""
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
        "use_cpu": _Code(f"not {cuda}") if isinstance(cuda, _Code) else not cuda,
        "seed": settings.seed,
        "data_seed": settings.seed,
        "report_to": ["mlflow"],  # transformers 5 reports nowhere unless asked
        "disable_tqdm": True,  # ProgressCallback prints plain lines that stream well
        "dataloader_num_workers": 0,
        **trainer_arguments(settings, cuda),  # more than one process: DDP or FSDP
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


def recipe(settings: Settings, output_dir: Path | str = "<job dir>") -> str:
    """The fine-tune as the Python `tunekit.train` runs: its LoraConfig and SFTConfig with the
    values of these settings, and the trainer they go into."""

    def call(name: str, arguments: dict[str, Any]) -> str:
        lines = "".join(f"    {k}={v!r},\n" for k, v in arguments.items())
        return f"{name}(\n{lines})"

    return (
        "cuda = torch.cuda.is_available()  # on the machine that trains (GKE: a GPU node)\n"
        f"peft_config = {call('LoraConfig', lora_arguments(settings))}\n"
        f"args = {call('SFTConfig', sft_arguments(settings, output_dir, _Code('cuda')))}\n"
        "trainer = SFTTrainer(model=base_model, args=args, train_dataset=train_rows,\n"
        "                     processing_class=tokenizer, peft_config=peft_config)\n"
        "trainer.train()"
    )
