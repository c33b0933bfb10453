"""Generating SQL with a model: the one code path for evaluation and serving."""

from __future__ import annotations

from typing import Any

from tunekit.prompts import build_prompt


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int = 96,
    batch_size: int = 32,
    temperature: float = 0.0,
) -> list[str]:
    """Completions of `prompts` (greedy unless `temperature` > 0), without the prompt."""
    import torch

    tokenizer.padding_side = "left"  # generation continues after the last real token
    outputs: list[str] = []
    model.eval()
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True)
        batch = batch.to(model.device)
        sampling = (
            {"do_sample": True, "temperature": temperature}
            if temperature > 0
            else {"do_sample": False}
        )
        with torch.inference_mode():
            generated = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **sampling,
            )
        new_tokens = generated[:, batch["input_ids"].shape[1] :]
        outputs += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return outputs


def generate_sql(
    model: Any, tokenizer: Any, rows: list[dict[str, str]], **kwargs: Any
) -> list[str]:
    """The model's SQL for each `{question, context}` row."""
    return generate(
        model, tokenizer, [build_prompt(r["question"], r["context"]) for r in rows], **kwargs
    )
