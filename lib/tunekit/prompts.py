"""The prompt template: the one place that says how a question becomes model input.

Training, evaluation and both servers call `build_prompt`; the completion the model learns (and
generates) is the SQL itself, followed by the tokenizer's EOS token.
"""

from __future__ import annotations

# The model input: the tables, then the question as an SQL comment; the SQL follows it.
TEMPLATE = "{context}\n-- {question}\n"


def build_prompt(question: str, context: str) -> str:
    """The model input for a question about the tables that `context` creates.

    >>> build_prompt("How many heads are older than 56?", "CREATE TABLE head (age INTEGER)")
    'CREATE TABLE head (age INTEGER)\\n-- How many heads are older than 56?\\n'
    """
    return TEMPLATE.format(context=context.strip(), question=question.strip())


def build_example(row: dict[str, str], eos_token: str) -> dict[str, str]:
    """A prompt-completion training example; the completion ends with `eos_token`."""
    return {
        "prompt": build_prompt(row["question"], row["context"]),
        "completion": row["answer"].strip() + eos_token,
    }
