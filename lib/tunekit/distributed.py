"""More than one training process: how `tunekit.train` is launched and what each process does.

One entry point, `python -m tunekit.train`. With more than one process it runs under `torchrun`
(`LAUNCHER`), which starts `nproc_per_node` copies on each machine and gives each its rank;
the Trainer (through accelerate) then trains data-parallel: `ddp` keeps a copy of the model in
each process, `fsdp` shards it across them. Where torchrun gets its rendezvous:

- local profile: one machine, `torchrun --standalone`, its flags given as the environment
  variables torchrun reads for them (`PET_<FLAG>`, torch/distributed/argparse_util.py `env`);
- gke profile: a Kubeflow Trainer TrainJob, whose torch plugin sets PET_NNODES,
  PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR and PET_MASTER_PORT in every node's
  container (kubeflow/trainer v2.3.0 pkg/runtime/framework/plugins/torch/torch.go).

Only the main process (rank 0) talks to MLflow and evaluates by generation; the others train
and leave. The learning rate is used as given: the effective batch size is
`per_device_train_batch_size x gradient_accumulation_steps x world_size`, so with more
processes each step sees more examples at the same rate (logged as `effective_batch_size`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunekit.settings import Settings

LAUNCHER = ("torchrun", "-m", "tunekit.train")


def launched(settings: Settings) -> bool:
    """Whether the fine-tune runs under torchrun (more than one process in all)."""
    return settings.world_size > 1


def standalone_env(settings: Settings) -> dict[str, str]:
    """torchrun's flags on one machine, as the environment it reads them from: a rendezvous on
    this host (`--standalone`), `nproc_per_node` processes."""
    return {"PET_STANDALONE": "1", "PET_NPROC_PER_NODE": str(settings.nproc_per_node)}


def state(cuda: bool) -> Any:
    """accelerate's process state, the one the Trainer uses. On a CPU it must be asked for
    with `cpu=True`: otherwise torchrun's processes each train alone (accelerate/state.py
    `_prepare_backend` picks gloo for several CPU processes only then)."""
    from accelerate import PartialState

    return PartialState(cpu=not cuda)


def effective_batch_size(settings: Settings) -> int:
    """Examples per optimizer step, over all processes."""
    return (
        settings.per_device_train_batch_size
        * settings.gradient_accumulation_steps
        * settings.world_size
    )


def trainer_arguments(settings: Settings, cuda: Any) -> dict[str, Any]:
    """SFTConfig's arguments for the strategy (none for one process).

    - ddp: NCCL between GPUs, gloo between CPU processes; LoRA leaves the base frozen and
      every adapter weight used, so DDP need not look for unused parameters.
    - fsdp: FSDP2 (`fully_shard`), each decoder layer its own unit (the model's
      `_no_split_modules`), the full adapter gathered when saved (one HF-compatible file), the
      weights loaded once on the main process and broadcast; activation checkpointing inside
      FSDP on a GPU (transformers' `fsdp_config` keys). The LoRA layers get units of their own
      and a QLoRA base FSDP's storage dtype from the Trainer itself
      (transformers/distributed/fsdp.py `update_fsdp_plugin_peft`, PEFT's
      `fsdp_auto_wrap_policy`).
    """
    if not launched(settings):
        return {}
    backend = _either(cuda, "nccl", "gloo")
    common: dict[str, Any] = {"ddp_backend": backend}
    if settings.distributed_strategy == "ddp":
        return {**common, "ddp_find_unused_parameters": False}
    return {
        **common,
        "fsdp": True,
        "fsdp_config": {
            "version": 2,
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "state_dict_type": "FULL_STATE_DICT",
            "cpu_ram_efficient_loading": True,
            "activation_checkpointing": cuda,
        },
        "activation_checkpointing": False,  # FSDP's own (fsdp_config) instead
    }


def _either(cuda: Any, on_gpu: str, on_cpu: str) -> Any:
    """`on_gpu` or `on_cpu` for a bool; for the recipe's `cuda` expression, the expression."""
    if isinstance(cuda, bool):
        return on_gpu if cuda else on_cpu
    return type(cuda)(f"{on_gpu!r} if {cuda} else {on_cpu!r}")


def gathered_model(
    trainer: Any, settings: Settings, output_dir: Path, load_base: Callable[[], Any]
) -> Any:
    """The tuned model (a PeftModel), whole, in the main process; None in the others under
    FSDP. One process or DDP: the trainer's own (each process holds all of it). FSDP: every
    process takes part in gathering the adapter into `<output_dir>/adapter` (the Trainer's
    `save_model`, a full state dict), then the main process puts it on a base of its own."""
    if not launched(settings) or settings.distributed_strategy == "ddp":
        return trainer.model
    folder = output_dir / "adapter"
    trainer.save_model(str(folder))
    if not trainer.is_world_process_zero():
        return None
    from peft import PeftModel

    return PeftModel.from_pretrained(load_base(), str(folder))
