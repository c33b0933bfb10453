"""One trial of a recipe search for the local profile: fine-tune a base (tiny-gemma2, or any
`-p model_id=<dir>`, e.g. one tools/pretrain_tiny_gemma2.py wrote elsewhere) with LoRA, score
it on the held-out rows and on the validation set (constrained and free decoding), never on the
test set: a recipe search chooses, so it reads validation data only; one JSON line per trial
(--out).

Not a test: every trial trains for minutes on the CPU. The kit's own pieces do the work
(`models.load_base`, the SFTConfig/LoraConfig of `tunekit.recipe`, `inference`, `evaluate`),
without MLflow, so a trial measures the recipe alone.

    .venv/bin/python bench/recipe_search.py --seed 42 -p max_steps=2000 -p learning_rate=1e-3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("-p", action="append", default=[], help="a tunekit setting KEY=VALUE")
    parser.add_argument("--models-dir", type=Path, default=Path("/tmp/recipe-models"))
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, default=Path("/tmp/recipe-search.jsonl"))
    parser.add_argument("--save", type=Path, help="keep the trained adapter in this folder")
    parser.add_argument(
        "--show", type=int, default=0, help="print this many wrong validation answers"
    )
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from tunekit.eval_sets import STYLE, validation_rows
    from tunekit.evaluate import evaluate
    from tunekit.inference import generate_sql
    from tunekit.models import load_base
    from tunekit.prompts import build_example
    from tunekit.recipe import lora_arguments, sft_arguments
    from tunekit.settings import load_settings
    from tunekit.splits import load_splits

    overrides = dict(item.split("=", 1) for item in args.p)
    settings = load_settings(profile="local", seed=args.seed, **overrides)
    timings = {}

    started = time.monotonic()
    train_rows, eval_rows = load_splits(settings)
    validation = validation_rows()
    model, tokenizer, _ = load_base(settings.model_id, models_dir=args.models_dir)
    timings["load_s"] = time.monotonic() - started
    examples = Dataset.from_list([build_example(r, tokenizer.eos_token) for r in train_rows])
    with tempfile.TemporaryDirectory() as scratch:
        config = sft_arguments(settings, scratch, cuda=False) | {
            "report_to": [],
            "save_strategy": "no",
            "logging_strategy": "steps",
        }
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**config),
            train_dataset=examples,
            processing_class=tokenizer,
            peft_config=LoraConfig(**lora_arguments(settings)),
        )
        started = time.monotonic()
        trained = trainer.train()
        timings["train_s"] = time.monotonic() - started
        if args.save:
            trainer.model.save_pretrained(args.save)
            tokenizer.save_pretrained(args.save)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]

    started = time.monotonic()
    generation = {"max_new_tokens": settings.eval_max_new_tokens, "batch_size": 200}
    tuned_model = trainer.model
    tuned_model.eval()
    scores = {}
    with torch.inference_mode():
        for name, rows in (("held_out", eval_rows), ("validation", validation)):
            for decoding in ("constrained", "free"):
                tuned = generate_sql(
                    tuned_model,
                    tokenizer,
                    rows,
                    constrained=decoding == "constrained",
                    **generation,
                )
                result = evaluate(rows, tuned, settings.seed)
                scores[f"{name}_tuned_{decoding}_execution_accuracy"] = result["execution_accuracy"]
                for style in sorted({r.get(STYLE, "") for r in rows} - {""}):
                    picked = [s["execution"] for r, s in zip(rows, result["scores"], strict=True)
                              if r.get(STYLE) == style]  # fmt: skip
                    key = f"{name}_{style}_tuned_{decoding}_execution_accuracy"
                    scores[key] = sum(picked) / len(picked)
                if name == "validation" and decoding == "constrained" and args.show:
                    wrong = [(r, p) for r, p, s in zip(rows, tuned, result["scores"], strict=True)
                             if not s["execution"]]  # fmt: skip
                    for row, predicted in wrong[: args.show]:
                        print(
                            f"  {row['question']}\n    gold {row['answer']}\n    got  {predicted}"
                        )
    timings["evaluate_s"] = time.monotonic() - started
    line = {
        "label": args.label,
        "seed": args.seed,
        "settings": overrides,
        **{k: round(v, 4) for k, v in scores.items()},
        "train_loss": round(trained.training_loss, 4),
        "last_losses": [round(x, 3) for x in losses[-3:]],
        **{k: round(v, 1) for k, v in timings.items()},
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(line), flush=True)
    with args.out.open("a") as out:
        out.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
