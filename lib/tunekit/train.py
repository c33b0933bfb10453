"""Fine-tune Gemma-2 with LoRA on text-to-SQL rows, tracked as one MLflow run.

The only training code path: the local profile runs it as a subprocess, the GKE Job runs it as
the container's command. Settings come from a config file (a dump of tunekit's settings) and the
environment (`TUNEKIT_<NAME>`, `MLFLOW_TRACKING_URI`, and secrets such as `HF_TOKEN`).

With more than one process (`nproc_per_node`, `num_nodes`), torchrun launches it, and the main
process alone writes the MLflow run and evaluates (`tunekit.distributed`).

Usage:
    python -m tunekit.train --config runs/<run-id>/finetune/<job>/config.yaml
    python -m tunekit.train --config runs/<run-id>/finetune/<job>/config.yaml --resume
    python -m tunekit.train --config config.yaml --jobs-dir /workspace/finetune -p lora_r=8

The last lines it prints are the objective as `name=value` (Katib's stdout metrics collector
reads them: a sweep's trial on GKE is this command).
    TUNEKIT_MAX_STEPS=50 python -m tunekit.train --output-dir /tmp/job
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from tunekit.objective import OBJECTIVE

RESULT_FILE = "result.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tunekit.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="settings file (YAML); env fills the rest")
    parser.add_argument("--output-dir", type=Path, help="default: the config file's directory")
    parser.add_argument(
        "--jobs-dir",
        type=Path,
        help="write into <jobs-dir>/<the settings' job name> (a sweep's trials on GKE)",
    )
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting over the config file's (a sweep's trial parameters)",
    )
    parser.add_argument(
        "--models-dir", type=Path, help="where tiny-gemma2 is placed (for the servers too)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint, in the same MLflow run",
    )
    args = parser.parse_args(argv)
    if not (args.config or args.output_dir or args.jobs_dir):
        parser.error("give --config, --output-dir or --jobs-dir")
    if args.output_dir and args.jobs_dir:
        parser.error("give --output-dir or --jobs-dir, not both")
    for item in args.param:
        if "=" not in item or not item.partition("=")[0].strip().isidentifier():
            parser.error(f"-p {item!r}: expected KEY=VALUE")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from tunekit.gpu_stack import GpuMismatch, require_cuda

    try:
        require_cuda()  # on a GPU pod: the node's driver runs this image's CUDA
    except GpuMismatch as e:
        raise SystemExit(f"tunekit.train: {e}") from None
    import datasets
    import torch
    import transformers
    import yaml
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    from tunekit import distributed, mlflow_record
    from tunekit.models import load_base
    from tunekit.prompts import build_example
    from tunekit.settings import load_settings
    from tunekit.splits import load_splits
    from tunekit.train_parts import (
        MetricBufferCallback,
        ProgressCallback,
        ThroughputCallback,
        last_complete_checkpoint,
        lora_config,
        sft_config,
    )

    datasets.disable_progress_bars()  # ProgressCallback's lines are the progress
    transformers.utils.logging.disable_progress_bar()
    cuda = torch.cuda.is_available()

    # Read the settings
    values = yaml.safe_load(args.config.read_text()) if args.config else {}
    values |= dict(item.split("=", 1) for item in args.param)
    settings = load_settings(**values)
    if args.jobs_dir:
        output_dir = (args.jobs_dir / settings.finetune_job).resolve()
    else:
        output_dir = (args.output_dir or args.config.parent).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    processes = distributed.state(cuda)  # one, or torchrun's: the main one tracks and evaluates
    if processes.num_processes != settings.world_size:
        raise SystemExit(
            f"tunekit: the settings ask for {settings.world_size} training process(es) "
            f"(nproc_per_node x num_nodes), {processes.num_processes} started: launch "
            f"{' '.join(distributed.LAUNCHER)} with the settings' nproc_per_node"
        )
    main_process = processes.is_main_process

    # Load and split the dataset
    train_rows, eval_rows = load_splits(settings)

    # Load the base model and tokenizer (tiny-gemma2 is placed in the models folder first)
    say(f"loading {settings.model_id} ({len(train_rows)} training rows, {len(eval_rows)} held out)")
    models_dir = args.models_dir or output_dir / "models"
    device = processes.local_process_index if cuda else None  # this process's GPU
    with processes.main_process_first():  # one download or copy; the others read it
        model, tokenizer, base = load_base(
            settings.model_id,
            models_dir=models_dir,
            load_in_4bit=settings.load_in_4bit,
            device=device,
            sharded=settings.distributed_strategy == "fsdp",
        )
    examples = _dataset([build_example(r, tokenizer.eos_token) for r in train_rows])
    held_out = _dataset([build_example(r, tokenizer.eos_token) for r in eval_rows])

    checkpoint = last_complete_checkpoint(output_dir / "checkpoints")
    tracking = (
        mlflow_record.finetune_run(settings, output_dir, resume=args.resume)
        if main_process
        else nullcontext(None)  # the other processes train and log nothing
    )
    with tracking as tracked:
        if tracked and not (args.resume and checkpoint):
            tracked.log_inputs(settings, train_rows, eval_rows)

        # Train the LoRA adapter
        trainer = SFTTrainer(
            model=model,
            args=sft_config(settings, output_dir),
            train_dataset=examples,
            eval_dataset=held_out,
            processing_class=tokenizer,
            peft_config=lora_config(settings),
            callbacks=[ThroughputCallback(), ProgressCallback()]
            + ([MetricBufferCallback(tracked.buffer)] if tracked else []),
        )
        trainer.remove_callback(PrinterCallback)  # its raw dicts would repeat ProgressCallback
        resume_from = checkpoint if args.resume else None
        if resume_from and (state := finished_state(resume_from)):
            # killed after its last checkpoint: the Trainer, resumed there, would take one step
            # past max_steps (transformers/trainer.py `_run_epoch` checks after a step)
            say(f"{resume_from} is the last step: loading its adapter, nothing left to train")
            peft_model: Any = trainer.model  # SFTTrainer applied peft_config
            peft_model.load_adapter(resume_from, adapter_name="default")
            trainer.state = state
        else:
            say(f"resuming from {resume_from}" if resume_from else "training")
            trainer.train(resume_from_checkpoint=resume_from)

        # Evaluate the tuned and the base model on the held-out rows (once: a re-run after an
        # MLflow outage logs what the first attempt kept); the main process alone generates
        evaluation = mlflow_record.saved_evaluation(output_dir)
        # every process: the loss on its share of the rows; the adapter gathered under FSDP
        eval_loss = trainer.evaluate()["eval_loss"] if evaluation is None else 0.0
        tuned = distributed.gathered_model(
            trainer,
            settings,
            output_dir,
            lambda: load_base(settings.model_id, models_dir=models_dir, device=device)[0],
        )
        if tracked is None:
            return {}  # the main process evaluates, logs the adapter and ends the run
        evaluation = evaluation or mlflow_record.save_evaluation(
            output_dir, evaluate(tuned, tokenizer, eval_rows, settings, eval_loss)
        )

        # Log the evaluation and the adapter as an MLflow model (waiting out an MLflow outage
        # of up to mlflow_outage_s); the run ends once MLflow has every metric point
        say("logging the evaluation and the adapter to MLflow")
        tracked.log_evaluation(evaluation)
        model_uri = tracked.log_adapter(tuned, tokenizer, base, settings, eval_rows[0])

    result = {
        "mlflow_run_id": tracked.run_id,
        "experiment_id": tracked.experiment_id,
        "model_uri": model_uri,
        "base_model": base,
        "eval_loss": evaluation["eval_loss"],
        "steps": trainer.state.global_step,
        "resumed_from_step": int(checkpoint.rsplit("-", 1)[1]) if args.resume and checkpoint else 0,
        **evaluation["metrics"],
    }
    from tunekit.state import write_atomic  # all or nothing: a re-run reads it

    write_atomic(output_dir / RESULT_FILE, json.dumps(result, indent=2))
    print(json.dumps(result), flush=True)
    for name in OBJECTIVE:  # Katib's default filter: `([\w|-]+)\s*=\s*(<number>)`
        print(f"{name}={result[name]}", flush=True)
    return result


def evaluate(
    tuned_model: Any, tokenizer: Any, rows: list[dict], settings: Any, eval_loss: float
) -> dict[str, Any]:
    """The tuned (a PeftModel) and the base model's answers to the held-out rows, the
    validation set and the test set (`tunekit.eval_sets`), scored (`mlflow_record.evaluate_models`);
    the run's `score` (held-out and validation: the test set is reported, never chosen by).

    Both models answer as the servers do (`constrained_decoding`); the tuned model answers the
    other way too (`tuned_free_...` or `tuned_constrained_...`), so the grammar's effect is a
    number in every run."""
    from tunekit import eval_sets, mlflow_record, objective
    from tunekit.inference import generate_sql

    sets = {
        "held_out": rows,
        eval_sets.VALIDATION: eval_sets.validation_rows(settings.eval_set_rows),
        eval_sets.TEST: eval_sets.test_rows(settings.eval_set_rows),
    }
    say(
        "evaluating the base and the tuned model on "
        + ", ".join(f"{len(asked)} {name.replace('_', '-')}" for name, asked in sets.items())
        + " questions"
    )
    constrained = settings.constrained_decoding
    other = "tuned_free" if constrained else "tuned_constrained"

    def answers(model: Any, asked: list[dict], constrain: bool) -> list[str]:
        return generate_sql(
            model,
            tokenizer,
            asked,
            constrained=constrain,
            free_literals=settings.free_literals,
            max_new_tokens=settings.eval_max_new_tokens,
            batch_size=settings.eval_batch_size,
        )

    metrics: dict[str, float | None] = {}
    tables = {}
    for name, asked in sets.items():
        predicted = {
            "tuned": answers(tuned_model, asked, constrained),
            other: answers(tuned_model, asked, not constrained),
        }
        with tuned_model.disable_adapter():
            predicted["base"] = answers(tuned_model, asked, constrained)
        prefix = "" if name == "held_out" else eval_sets.prefix(name)
        scored = mlflow_record.evaluate_models(asked, predicted, settings.seed, prefix)
        metrics |= scored["metrics"]
        tables[name] = scored["table"]
    metrics[objective.SCORE] = objective.score(metrics)
    return {
        "eval_loss": eval_loss,
        "metrics": metrics,
        "tables": tables,
        "timestamp": int(time.time() * 1000),
    }


def say(message: str) -> None:
    """A status line (the main process's; under torchrun the others keep quiet); the local
    job shows these live next to the progress lines."""
    if os.environ.get("RANK", "0") == "0":
        print(f"tunekit: {message}", flush=True)


def finished_state(checkpoint: str) -> Any:
    """The checkpoint's TrainerState if it is the training's last step, else None."""
    from transformers import TrainerState

    state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    return state if state.max_steps > 0 and state.global_step >= state.max_steps else None


def _dataset(examples: list[dict[str, str]]):
    from datasets import Dataset

    return Dataset.from_list(examples)


# Katib's stdout collector takes as the trial's main process the one it finds when it starts
# (katib v0.19.0 pkg/metricscollector/v1beta1/common/pns.go); a trainer that has already exited
# leaves it the Cloud Storage FUSE sidecar, which ends only after it: the pod never ends. Under
# Katib (its webhook sets KATIB_TRIAL_NAME in the trial's container), a trainer that ends early
# stays until the collector has surely seen it.
KATIB_TRIAL_ENV, TRIAL_MIN_S = "KATIB_TRIAL_NAME", 120.0


def trial_aware_main(argv: list[str] | None = None) -> dict:
    """`main`; under Katib, not ending before TRIAL_MIN_S after the start, whatever the end."""
    started = time.monotonic()
    try:
        return main(argv)
    finally:
        if os.environ.get(KATIB_TRIAL_ENV):
            left = TRIAL_MIN_S - (time.monotonic() - started)
            if left > 0:
                print(f"tunekit.train: ended early in a Katib trial; waiting {left:.0f} s for "
                      "its collector to see it", file=sys.stderr, flush=True)  # fmt: skip
                time.sleep(left)


if __name__ == "__main__":
    trial_aware_main()
