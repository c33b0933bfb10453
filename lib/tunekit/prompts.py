"""The prompt template: the one place that says how a question becomes model input.

Training, evaluation and both servers call `build_prompt`; the completion the model learns (and
generates) is the SQL itself, followed by the tokenizer's EOS token.
"""

from __future__ import annotations

import re

# The model input, as the GKE tutorial trains and asks it (its finetune.py and input.json):
# the question, the tables, and the SQL after "Answer:".
TEMPLATE = "Question: {question}\nContext: {context}\n\nAnswer:"


def build_prompt(question: str, context: str) -> str:
    """The model input for a question about the tables that `context` creates.

    >>> print(build_prompt("How many heads are older than 56?", "CREATE TABLE head (age INTEGER)"))
    Question: How many heads are older than 56?
    Context: CREATE TABLE head (age INTEGER)
    <BLANKLINE>
    Answer:
    """
    return TEMPLATE.format(context=context.strip(), question=question.strip())


def build_example(row: dict[str, str], eos_token: str) -> dict[str, str]:
    """A prompt-completion training example; the completion ends with `eos_token`."""
    return {
        "prompt": build_prompt(row["question"], row["context"]),
        "completion": " " + row["answer"].strip() + eos_token,
    }


_PARTS = re.compile(r"^Question: (?P<question>.*)\nContext: (?P<context>.*)\n\nAnswer:\s*$", re.S)


def parse_prompt(prompt: str) -> tuple[str, str] | None:
    """The (question, context) a prompt in the template was built from; None for other text.

    >>> parse_prompt(build_prompt("How many heads?", "CREATE TABLE head (age INTEGER)"))
    ('How many heads?', 'CREATE TABLE head (age INTEGER)')
    """
    found = _PARTS.match(prompt.strip())
    if found is None or "\nContext: " in found["question"]:
        return None
    return found["question"].strip(), found["context"].strip()
