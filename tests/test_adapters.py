"""Two LoRA adapters on one base model, rows of both in one `generate` call (issue 29).

The serving of a rollout answers champion and challenger requests from one process: PEFT's
mixed-adapter batches (`adapter_names`, a name per row; peft 0.21 docs, "Inference with
different LoRA adapters in the same batch"). The base is the kit's tiny-gemma2; the two
adapters are LoRA weights initialised at random (`init_lora_weights=False`) and differently,
so they answer differently where a test needs them to.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tunekit.grammar import sql_grammar
from tunekit.inference import generate_batch
from tunekit.models import TINY_DIR
from tunekit.prompts import build_prompt

QUESTIONS = [
    ("How many games had a week of 3?", "CREATE TABLE game (venue TEXT, week INT)"),
    ("Who is the youngest pilot?", "CREATE TABLE pilot (name TEXT, age INT)"),
    ("Name the coach from Leeds", "CREATE TABLE table_name_7 (coach VARCHAR, city VARCHAR)"),
    ("How many ships sail under the flag of Peru?", "CREATE TABLE ship (name TEXT, flag TEXT)"),
]  # fmt: skip
PROMPTS = [build_prompt(q, c) for q, c in QUESTIONS]


@pytest.fixture(scope="module")
def two_adapters() -> tuple[Any, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(TINY_DIR)
    config = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"],
                        init_lora_weights=False)  # fmt: skip
    torch.manual_seed(1)
    model = get_peft_model(base, config, adapter_name="champion")
    torch.manual_seed(2)
    model.add_adapter("challenger", config)
    return model.eval(), AutoTokenizer.from_pretrained(TINY_DIR)


def answers(components: tuple[Any, Any], adapters: list[str], grammars: bool = False) -> list[str]:
    model, tokenizer = components
    return generate_batch(
        model, tokenizer, PROMPTS, [12] * len(PROMPTS), [0.0] * len(PROMPTS),
        [sql_grammar(q, c) for q, c in QUESTIONS] if grammars else None, adapters,
    )  # fmt: skip


@pytest.mark.parametrize("constrained", [False, True])
def test_rows_of_two_adapters_in_one_call_answer_as_each_adapter_alone(
    two_adapters, constrained
) -> None:
    champion = answers(two_adapters, ["champion"] * 4, constrained)
    challenger = answers(two_adapters, ["challenger"] * 4, constrained)
    assert champion != challenger  # the adapters differ, or this test would prove nothing
    mixed = ["champion", "challenger", "challenger", "champion"]
    expected = [(champion if a == "champion" else challenger)[i] for i, a in enumerate(mixed)]
    assert answers(two_adapters, mixed, constrained) == expected


def test_an_adapter_the_model_does_not_have_is_refused(two_adapters) -> None:
    with pytest.raises(ValueError, match="nope"):
        answers(two_adapters, ["champion", "nope", "champion", "champion"])
