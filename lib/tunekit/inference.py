"""Generating SQL with a model: the one code path for evaluation and serving."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from tunekit.prompts import build_prompt

# A temperature below this is greedy decoding: dividing logits by ~0 gives inf (1e-45 did)
MIN_TEMPERATURE = 1e-2


class LockedTokenizer:
    """A tokenizer that one thread at a time may use.

    A fast tokenizer sets its Rust backend's padding and truncation on every call, so two threads
    calling it at once get each other's padding ("Unable to create tensor", or the backend's
    "Already borrowed": huggingface/transformers#47085). Every call goes through one lock;
    attributes (ids, special tokens) are read through.
    """

    def __init__(self, tokenizer: Any):
        self._tokenizer, self._lock = tokenizer, threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._tokenizer(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._tokenizer.decode(*args, **kwargs)

    def batch_decode(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._tokenizer.batch_decode(*args, **kwargs)

    @property
    def wrapped(self) -> Any:
        """The tokenizer itself (for what reads its vocabulary once, e.g. a grammar compiler)."""
        return self._tokenizer

    def count(self, text: str) -> int:
        """Tokens of `text` as the model sees it (special tokens included)."""
        return len(self(text)["input_ids"])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


def is_greedy(temperature: float) -> bool:
    return temperature < MIN_TEMPERATURE


def generate_batch(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: Sequence[int],
    temperatures: Sequence[float],
    grammars: Sequence[str | None] | None = None,
    adapters: Sequence[str] | None = None,
) -> list[str]:
    """One `generate` call for all `prompts`, each with its own length limit, temperature
    (greedy below MIN_TEMPERATURE), grammar (`tunekit.grammar`; None: free) and, on a PEFT model
    with several LoRA adapters, adapter (PEFT's mixed-adapter batch: `adapter_names`, a name
    per row): a row stops at its own limit, a sampled row and a greedy one, a constrained row
    and a free one, rows of two adapters share the call. Completions without the prompt."""
    import torch
    from transformers import LogitsProcessorList, StoppingCriteriaList

    batch = encode_batch(tokenizer, prompts).to(model.device)
    width = batch["input_ids"].shape[1]
    limits = torch.tensor(list(max_new_tokens), device=model.device)
    processors = LogitsProcessorList()
    if grammars is not None and any(g is not None for g in grammars):
        processors.append(constraint(model, tokenizer, grammars))
    options: dict[str, Any] = {"do_sample": False, "logits_processor": processors}
    if not all(is_greedy(t) for t in temperatures):
        processors.append(RowTemperature(temperatures, model.device))
        options["do_sample"] = True
    if adapters is not None:
        options["adapter_names"] = list(adapters)
    model.eval()
    with torch.inference_mode():
        generated = model.generate(
            **batch,
            max_new_tokens=int(limits.max()),
            stopping_criteria=StoppingCriteriaList([RowLimit(width, limits)]),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **options,
        )
    rows = [row[width : width + n] for row, n in zip(generated, max_new_tokens, strict=True)]
    return [text.strip() for text in tokenizer.batch_decode(rows, skip_special_tokens=True)]


def stop_token_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    """The ids that end an answer: the tokenizer's EOS and the model's generation config's
    (Gemma-2 stops on <eos> and <end_of_turn>, 1 and 107)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    return tuple(sorted({i for i in (*ids, tokenizer.eos_token_id) if isinstance(i, int)}))


def constraint(model: Any, tokenizer: Any, grammars: Sequence[str | None]) -> Any:
    """The logits processor that holds each row to its grammar (`tunekit.grammar.Constraint`)."""
    from tunekit.grammar import Constraint, grammars_for

    vocab_size = model.config.get_text_config().vocab_size  # the logits' width
    raw = tokenizer.wrapped if isinstance(tokenizer, LockedTokenizer) else tokenizer
    compiler = grammars_for(raw, vocab_size, stop_token_ids(model, tokenizer))
    return Constraint([compiler.compile(g) if g else None for g in grammars], vocab_size)


def encode_batch(tokenizer: Any, prompts: Sequence[str]) -> Any:
    """Token ids and attention mask of `prompts`, padded on the left (generation continues
    after the last real token)."""
    return tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left")


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int = 96,
    batch_size: int = 32,
    temperature: float = 0.0,
    grammars: Sequence[str | None] | None = None,
) -> list[str]:
    """Completions of `prompts` (greedy unless `temperature` > 0, each held to its grammar
    when `grammars` are given), `batch_size` at a time."""
    outputs: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        outputs += generate_batch(
            model,
            tokenizer,
            chunk,
            [max_new_tokens] * len(chunk),
            [temperature] * len(chunk),
            grammars[start : start + batch_size] if grammars is not None else None,
        )
    return outputs


def generate_sql(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, str]],
    constrained: bool = False,
    free_literals: bool = False,
    **kwargs: Any,
) -> list[str]:
    """The model's SQL for each `{question, context}` row; `constrained`: SQL over the row's
    own tables, literals from its question (`tunekit.grammar.sql_grammar`)."""
    from tunekit.grammar import sql_grammar

    prompts = [build_prompt(r["question"], r["context"]) for r in rows]
    grammars = (
        [sql_grammar(r["question"], r["context"], free_literals) for r in rows]
        if constrained
        else None
    )
    return generate(model, tokenizer, prompts, grammars=grammars, **kwargs)


class RowLimit:
    """Stopping criterion: row i is done after `limits[i]` new tokens (transformers' criteria
    return one flag per row; a finished row gets padding while the others go on)."""

    def __init__(self, prompt_width: int, limits: Any):
        self.prompt_width, self.limits = prompt_width, limits

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return (input_ids.shape[1] - self.prompt_width) >= self.limits


class RowTemperature:
    """Logits processor: each row's logits divided by its own temperature; a greedy row keeps
    only its argmax, so sampling it gives the greedy token."""

    def __init__(self, temperatures: Sequence[float], device: Any):
        import torch

        greedy = [is_greedy(t) for t in temperatures]
        self.greedy = torch.tensor(greedy, device=device)
        self.temperature = torch.tensor(
            [1.0 if g else t for g, t in zip(greedy, temperatures, strict=True)], device=device
        )

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scaled = scores / self.temperature[:, None].to(scores.dtype)
        argmax_only = torch.full_like(scores, float("-inf")).scatter(
            1, scores.argmax(dim=1, keepdim=True), 0.0
        )
        return torch.where(self.greedy[:, None], argmax_only, scaled)
